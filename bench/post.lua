-- wrk script: POST the request body stored in the file named by BENCH_BODY, as the runtime would.
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*all")
wrk.headers["Content-Type"] = "application/octet-stream"
file:close()
