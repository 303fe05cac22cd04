"""The SDK's RequestReplyHandler.handle_async from its parsed request on: one batch run as the SDK runs it.

statefun 3.3.0's `handle_async` takes the request's bytes and parses them itself. The Dispatcher has parsed them
already, to refuse a bad body 4xx, so it hands its parsed batch here: parsing once saves the second parse and the
SDK's second lookup of the target (measured in BENCHMARKS.md). `run_batch` is the rest of `handle_async`, step by
step: resolve the state (or ask for what is missing), run each invocation with a Message and its caller, collect the
reply. It is the one place that relies on the SDK's internals: request_reply_v3's helpers (`resolve`,
`collect_failure`, `collect_success`, `UserFacingContext`, `sdk_address_from_pb`) and the context's `_caller`, which
`handle_async` writes before each invocation and which has no setter. tests/unit/test_dependency_adapters.py
holds it to the SDK's version and to `handle_async`'s source as it was read; tests/protocol/test_differential.py
holds its replies to the SDK's, byte for byte.
"""

from statefun.core import SdkAddress
from statefun.messages import Message
from statefun.request_reply_pb2 import ToFunction
from statefun.request_reply_v3 import UserFacingContext, collect_failure, collect_success, sdk_address_from_pb
from statefun.statefun_builder import StatefulFunction
from statefun.storage import resolve


async def run_batch(function: StatefulFunction, address: SdkAddress, batch: ToFunction.InvocationBatchRequest) -> bytes:
    """The serialized FromFunction the SDK's handle_async answers to `batch`, addressed to `address` and served by
    `function` (the registry's entry for its typename): the missing-state reply, or the invocations' result.
    """
    resolution = resolve(function.storage_spec, address.typename, batch.state)
    if resolution.missing_specs:
        missing: bytes = collect_failure(resolution.missing_specs).SerializeToString()
        return missing
    context = UserFacingContext(address, resolution.storage)
    typename, address_id, fun, is_async = address.typename, address.id, function.fun, function.is_async
    for invocation in batch.invocations:
        message = Message(target_typename=typename, target_id=address_id, typed_value=invocation.argument)
        context._caller = sdk_address_from_pb(invocation.caller)  # noqa: SLF001  # as handle_async sets it (no setter)
        if is_async:
            await fun(context, message)
        else:
            fun(context, message)
    reply: bytes = collect_success(context).SerializeToString()
    return reply
