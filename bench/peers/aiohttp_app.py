"""Peer (b): the StateFun playground's way of serving Python functions: aiohttp + handle_async.

Same function (greeter.function.greeter) and protobuf (upb) as ours, so only the serving path differs.
"""

import argparse

from aiohttp import web
from statefun import RequestReplyHandler

from greeter.config.settings import Settings
from greeter.function.greeter import build_functions

handler = RequestReplyHandler(build_functions(Settings()))


async def statefun(request: web.Request) -> web.Response:
    reply = await handler.handle_async(await request.read())
    return web.Response(body=reply, content_type="application/octet-stream")


async def ready(_request: web.Request) -> web.Response:
    return web.Response(text="ready\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([web.post("/statefun", statefun), web.get("/readyz", ready)])
    web.run_app(app, host="127.0.0.1", port=parser.parse_args().port, access_log=None, print=None)


if __name__ == "__main__":
    main()
