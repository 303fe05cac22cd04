"""The request-reply protocol: the SDK's own RequestReplyHandler, behind a check that answers bad input 4xx.

Every batch is run as statefun.RequestReplyHandler.handle_async runs it. In front of it, `_check` parses the body
and refuses what the SDK would raise on, which the server would answer 500 and the runtime retry until the job
restarts: a body that is not a ToFunction invocation batch, no target, an unknown function type. The batch it
parsed is then run by greeter/protocol/sdk_batch.py, the rest of the SDK's handle_async, so the body is parsed once.
State the function cannot read (another typename, bytes that do not decode) is refused too, once the SDK raised on
it. A batch addressed to an empty id, which the SDK cannot turn into a Message, goes to `on_empty_id` when one is
given (the greeter dead-letters its records) and is refused otherwise.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from google.protobuf.message import DecodeError
from statefun import StatefulFunctions
from statefun.core import SdkAddress, parse_typename
from statefun.request_reply_pb2 import FromFunction, ToFunction, TypedValue
from statefun.statefun_builder import StatefulFunction

from greeter.protocol.sdk_batch import run_batch


class InvalidRequest(ValueError):
    """The body is not a ToFunction invocation batch this service can run."""


class UnknownFunction(LookupError):
    """The batch targets a function type this service does not serve."""

    def __init__(self, typename: str) -> None:
        super().__init__(f"no function of type {typename!r} is served here")
        self.typename = typename


class Reply(NamedTuple):  # a tuple: built once per request, on the hot path
    """One batch's reply bytes, with what the metrics and logs need to know about the batch."""

    body: bytes
    # The function type and id the batch was for.
    typename: str
    address_id: str
    # Invocations carried by the batch; 0 when the reply asks the runtime for missing state.
    invocations: int


# Egress messages (statefun.EgressMessage) for the arguments of a batch addressed to the empty id.
EmptyIdHandler = Callable[[str, Sequence[TypedValue]], Sequence[Any]]


# How a FromFunction asking for missing state begins: its `incomplete_invocation_context` field's tag. The reply
# to a batch that ran begins with `invocation_result`'s tag, or is empty. Telling the two apart from the SDK's reply
# costs a byte comparison, where reading the state names the batch carries cost more than parsing it.
_ASKS_FOR_STATE = FromFunction(incomplete_invocation_context={}).SerializeToString()[:-1]  # less its length, 0


class _Checked(NamedTuple):
    address: SdkAddress  # the target, as the SDK's handler takes it
    invocations: int  # carried by the batch; delivered only when the reply does not ask for state
    function: StatefulFunction
    batch: Any  # ToFunction.InvocationBatchRequest


def _unreadable_state(function: Any, received: Any) -> InvalidRequest | None:
    """Why the function could not read the state it was sent, or None: a typename other than the declared one,
    or bytes its type does not decode. Each name's last entry counts, as in the SDK's own resolution.
    """
    declared = {spec.name: spec.type for spec in function.storage_spec.specs}
    sent = {value.state_name: value.state_value for value in received}
    for name, value in sent.items():
        state_type = declared.get(name)
        if state_type is None or not value.has_value:
            continue
        if value.typename != state_type.typename:
            return InvalidRequest(
                f"state {name!r} holds {value.typename!r}, the function declares {state_type.typename!r}"
            )
        try:
            state_type.serializer().deserialize(value.value)
        except Exception as error:  # any decoder failure: the bytes are not the declared type
            return InvalidRequest(f"state {name!r} is not a valid {state_type.typename}: {error}")
    return None


def _refuse_unreadable_state(checked: _Checked, error: Exception) -> None:
    """Raise InvalidRequest (from `error`, what the SDK raised) when state the function could not read caused
    it: the request's fault, not the function's. Looked for only once the SDK raised, so a good batch pays
    nothing for it.
    """
    refusal = _unreadable_state(checked.function, checked.batch.state)
    if refusal is not None:
        raise refusal from error


def _egress_reply(messages: Sequence[Any]) -> bytes:
    reply = FromFunction()
    result = reply.invocation_result
    result.SetInParent()
    for message in messages:
        namespace, name = parse_typename(message.typename)  # raises on a malformed typename, as the SDK does
        result.outgoing_egresses.add(egress_namespace=namespace, egress_type=name, argument=message.typed_value)
    body: bytes = reply.SerializeToString()
    return body


class Dispatcher:
    """Runs request-reply batches for `functions`; `handle` without an event loop, `handle_async` on one."""

    def __init__(self, functions: StatefulFunctions, on_empty_id: EmptyIdHandler | None = None) -> None:
        self._functions = functions
        self._on_empty_id = on_empty_id

    def _check(self, body: bytes) -> _Checked:
        to_function = ToFunction()
        try:
            to_function.ParseFromString(body)
        except DecodeError as error:
            raise InvalidRequest(f"body is not a ToFunction message: {error}") from None
        if not to_function.HasField("invocation"):
            raise InvalidRequest("body is not a ToFunction invocation batch")
        batch = to_function.invocation
        target = batch.target
        if not target.namespace or not target.type:
            raise InvalidRequest("the invocation batch names no target function")
        namespace, name, address_id = target.namespace, target.type, target.id
        typename = f"{namespace}/{name}"
        try:
            function = self._functions.for_typename(typename)
        except KeyError:
            raise UnknownFunction(typename) from None
        if not address_id and self._on_empty_id is None:
            raise InvalidRequest("the invocation batch is addressed to an empty id")
        address = SdkAddress(namespace, name, address_id, typename)
        return _Checked(address, len(batch.invocations), function, batch)

    def _empty_id_reply(self, checked: _Checked) -> Reply:
        assert self._on_empty_id is not None  # _check refused the batch otherwise
        typename = checked.address.typename
        arguments = [invocation.argument for invocation in checked.batch.invocations]
        body = _egress_reply(self._on_empty_id(typename, arguments))
        return Reply(body, typename, "", len(arguments))

    async def handle_async(self, body: bytes) -> Reply:
        """The reply to one batch, for a caller on a running event loop (the server's)."""
        checked = self._check(body)
        address = checked.address
        if not address.id:
            return self._empty_id_reply(checked)
        try:
            reply = await run_batch(checked.function, address, checked.batch)
        except Exception as error:
            _refuse_unreadable_state(checked, error)
            raise
        # The SDK asks for missing state instead of invoking: then the batch delivered nothing.
        invocations = 0 if reply.startswith(_ASKS_FOR_STATE) else checked.invocations
        return Reply(reply, address.typename, address.id, invocations)

    def handle(self, body: bytes) -> Reply:
        """The reply to one batch, for a caller with no running event loop (tests, probes, WSGI servers)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.handle_async(body))
        raise RuntimeError("Dispatcher.handle was called on a running event loop: await handle_async instead")
