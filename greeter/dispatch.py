"""The request-reply protocol without an event loop per request.

The SDK's RequestReplyHandler.handle_sync runs asyncio.run() for every request (110-150 us of a
130-190 us call here) even when the function is synchronous. This dispatcher does the same protocol steps
with the SDK's own building blocks, calling sync functions directly; async functions still go through
the SDK. It also tells a malformed body and an unknown function apart, so the app can answer 4xx.
"""

from typing import Any, NamedTuple

from google.protobuf.message import DecodeError
from statefun import RequestReplyHandler, StatefulFunctions
from statefun.messages import Message
from statefun.request_reply_pb2 import FromFunction, ToFunction
from statefun.request_reply_v3 import (
    UserFacingContext,
    collect_delayed,
    collect_failure,
    collect_messages,
    sdk_address_from_pb,
)
from statefun.storage import resolve


class InvalidRequest(ValueError):
    """The body is not a ToFunction invocation batch."""


class UnknownFunction(LookupError):
    """The batch targets a function type this service does not serve."""

    def __init__(self, typename: str) -> None:
        super().__init__(f"no function of type {typename!r} is served here")
        self.typename = typename


class Reply(NamedTuple):  # a tuple: built once per request, on the hot path
    body: bytes
    # The function type and id the batch was for.
    typename: str
    address_id: str
    # Invocations carried by the batch; 0 when the reply asks the runtime for missing state.
    invocations: int


def _message(typename: str, address_id: str, typed_value: Any) -> Message:
    # Message.__init__ rejects an empty id with ValueError; the function dead-letters such records instead.
    message: Message = Message.__new__(Message)
    message.target_typename = typename
    message.target_id = address_id
    message.typed_value = typed_value
    return message


_MODIFY = FromFunction.PersistedValueMutation.MODIFY
_DELETE = FromFunction.PersistedValueMutation.DELETE


def _collect(context: UserFacingContext) -> bytes:
    """The SDK's collect_success, minus its per-record typename parsing and enum lookups by name."""
    reply = FromFunction()
    result = reply.invocation_result
    result.SetInParent()  # an invocation result, even when the batch produced nothing
    if context._outgoing_messages:
        collect_messages(context._outgoing_messages, result)
    if context._outgoing_delayed_messages:
        collect_delayed(context._outgoing_delayed_messages, result)
    egresses = result.outgoing_egresses
    for message in context._outgoing_egress_messages:
        namespace, _, name = message.typename.rpartition("/")
        egresses.add(egress_namespace=namespace, egress_type=name, argument=message.typed_value)
    mutations = result.state_mutations
    for state_name, cell in context._storage._cells.items():
        if cell.dirty:
            if cell.typed_value is None:
                mutations.add(state_name=state_name, mutation_type=_DELETE)
            else:
                mutations.add(state_name=state_name, mutation_type=_MODIFY, state_value=cell.typed_value)
    body: bytes = reply.SerializeToString()
    return body


def _check_state(specs: Any, received: Any) -> None:
    """State the function would fail to read is the request's fault: refuse the batch, don't crash in it."""
    declared = {spec.name: spec.type for spec in specs}
    for value in received:
        state_type = declared.get(value.state_name)
        if state_type is None or not value.state_value.has_value:
            continue
        if value.state_value.typename != state_type.typename:
            raise InvalidRequest(
                f"state {value.state_name!r} holds {value.state_value.typename!r}, "
                f"the function declares {state_type.typename!r}"
            )
        try:
            state_type.serializer().deserialize(value.state_value.value)
        except Exception as error:  # any decoder failure: the bytes are not the declared type
            raise InvalidRequest(f"state {value.state_name!r} is not a valid {state_type.typename}: {error}") from None


class Dispatcher:
    def __init__(self, functions: StatefulFunctions) -> None:
        self._functions = functions
        self._sdk_handler = RequestReplyHandler(functions)

    def handle(self, body: bytes) -> Reply:
        to_function = ToFunction()
        try:
            to_function.ParseFromString(body)
        except DecodeError as error:
            raise InvalidRequest(f"body is not a ToFunction message: {error}") from None
        if not to_function.HasField("invocation"):
            raise InvalidRequest("body is not a ToFunction invocation batch")
        batch = to_function.invocation
        address = sdk_address_from_pb(batch.target)
        if address is None or not address.namespace or not address.name:
            raise InvalidRequest("the invocation batch names no target function")
        try:
            target = self._functions.for_typename(address.typename)
        except KeyError:
            raise UnknownFunction(address.typename) from None
        typename, address_id = address.typename, address.id
        if target.is_async:
            return Reply(self._sdk_handler.handle_sync(body), typename, address_id, len(batch.invocations))

        _check_state(target.storage_spec.specs, batch.state)
        resolution = resolve(target.storage_spec, address.typename, batch.state)
        if resolution.missing_specs:
            return Reply(collect_failure(resolution.missing_specs).SerializeToString(), typename, address_id, 0)
        context = UserFacingContext(address, resolution.storage)
        function = target.fun
        for invocation in batch.invocations:
            # Ingress records have no caller: skip building an empty address for each of them.
            context._caller = sdk_address_from_pb(invocation.caller) if invocation.HasField("caller") else None
            function(context, _message(typename, address_id, invocation.argument))
        return Reply(_collect(context), typename, address_id, len(batch.invocations))
