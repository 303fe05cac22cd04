"""Differential test: greeter.protocol.dispatch.Dispatcher answers every batch exactly as the StateFun SDK does.

The upstream is apache-flink-statefun 3.3.0's own `RequestReplyHandler(functions).handle_sync(body)`. Each
example builds a random registry (sync and async functions; int, string, bool and protobuf ValueSpecs, some
expiring after call or after write) and a random ToFunction batch for one of its functions: declared state
present, absent (has_value=False) or missing, extra undeclared state, duplicates, several invocations with and
without a caller. Every invocation argument carries a plan that drives the function through the SDK's public
context API: state reads, writes and deletes, messages, delayed messages with and without a cancellation token,
cancellations, Kafka and Kinesis egress (also to malformed egress typenames), and user errors.

The property: where the SDK replies, the Dispatcher (`handle`, and `handle_async` on a loop) replies with the
same FromFunction, parsed and byte for byte (it runs the steps of the SDK's handler on the batch it parsed), in a
Reply naming the batch's function type and id and its invocation count (0 exactly when the SDK asks for missing
state); where the SDK raises, the Dispatcher raises the same exception type with the same message. (Deleting state is
`del context.storage.x`; setting it to None raises ValueError in the SDK, a user error like any other.)

The Dispatcher refuses some bodies before the SDK sees them. Each such deliberate difference has its own tests,
named for it, asserting what the Dispatcher does and what the SDK really does with the same bytes:
  1. not a ToFunction:       InvalidRequest; the SDK raises DecodeError (undecodable bytes) or, for bytes that
                             parse (the empty body too), AttributeError ('NoneType' ... 'typename').
  2. no invocation batch:    InvalidRequest; the SDK raises AttributeError.
  3. no target namespace or type: InvalidRequest; the SDK raises AttributeError (namespace, type and id all
                             empty) or KeyError('ns/' or '/type'), or, when a function is registered under such a
                             typename (StatefulFunctions.register allows it), runs it (ValueError if the id is
                             empty too).
  4. unknown function type:  UnknownFunction(typename); the SDK raises KeyError(typename).
  5. unreadable declared state (typename other than the spec's, or bytes the spec's type cannot decode):
                             InvalidRequest; the SDK asks for missing state if any is missing, else raises
                             TypeError (typename) or DecodeError (bytes) from the function when it reads that
                             state, and otherwise replies as if nothing were wrong. Of two entries for one
                             state (the runtime sends one) the SDK keeps the last; the Dispatcher checks both.
  6. empty address id:       without on_empty_id, InvalidRequest; the SDK asks for missing state if any is
                             missing, else raises ValueError('target_id can not be missing') building the first
                             Message, and replies b"" to an empty batch. With on_empty_id, the reply is an
                             invocation_result holding exactly the hook's egress messages (state is not
                             required, the function is not run), present even when it is empty (bytes a2 06 00),
                             where the SDK's reply to a batch that produced nothing is b"".
Both entry points, `handle` and `handle_async`, are held to each difference.
Malformed egress typenames are not a difference: kafka_egress_message accepts them, the SDK raises ValueError
when it collects the reply (parse_typename), after the function returned, and so does the Dispatcher.

The main property's budget is GREETER_DIFF_EXAMPLES (default 2000), e.g. for a long run:
  GREETER_DIFF_EXAMPLES=50000 .venv/bin/pytest -q tests/protocol/test_differential.py -p no:cacheprovider
"""

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from google.protobuf.message import DecodeError
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from statefun import (
    BoolType,
    Context,
    EgressMessage,
    IntType,
    Message,
    RequestReplyHandler,
    StatefulFunctions,
    StringType,
    Type,
    ValueSpec,
    kafka_egress_message,
    kinesis_egress_message,
    make_json_type,
    make_protobuf_type,
    message_builder,
)
from statefun.request_reply_pb2 import Address, FromFunction, ToFunction, TypedValue

from greeter.protocol.dispatch import Dispatcher, InvalidRequest, Reply, UnknownFunction
from protos.generated.greeter_pb2 import SeenCount

EXAMPLES = int(os.environ.get("GREETER_DIFF_EXAMPLES", "2000"))
MAIN = settings(max_examples=EXAMPLES, deadline=None)
DIFFERENCE = settings(max_examples=300, deadline=None)

SEEN_COUNT = make_protobuf_type(SeenCount)  # type.googleapis.com/example.SeenCount
STATE_TYPES: tuple[Type, ...] = (IntType, StringType, BoolType, SEEN_COUNT)
PLAN = make_json_type("test.differential/plan")  # invocation arguments: the ops the function runs

FUNCTION_TYPENAMES = ("example/f0", "example/f1", "com.acme.fn/worker", "a/b/c")
SPEC_NAMES = ("seen", "count", "name", "flag", "total", "x_1", "_hidden")
UNDECLARED_NAMES = ("seen", "count", "zz_extra", "other_state", "")
MESSAGE_TARGETS = ("example/f0", "other.ns/fn", "x/y/z")
EGRESS_TYPENAMES = ("example/greets", "io.acme/kinesis", "a/b/c")
MALFORMED_TYPENAMES = ("noslash", "ns/", "/name")
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

texts = st.text(max_size=8)
ids = st.text(min_size=1, max_size=8)
tokens = st.text(max_size=4)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------------
# The functions under test: one interpreter of plans, registered sync or async with each drawn set of specs.
# ---------------------------------------------------------------------------------------------------------------


class PlannedFailure(Exception):
    """A user error the plan asks the function to raise."""


EXCEPTIONS: dict[str, type[Exception]] = {
    "planned": PlannedFailure,
    "runtime": RuntimeError,
    "key": KeyError,
    "zero": ZeroDivisionError,
}


def python_value(tpe: Type | None, value: Any) -> Any:
    """The Python value a plan's JSON value stands for, in state of type `tpe`."""
    return SeenCount(seen=value) if tpe is SEEN_COUNT else value


def successor(tpe: Type, value: Any) -> Any:
    if tpe is SEEN_COUNT:
        return SeenCount(seen=(value.seen if value is not None else 0) + 1)
    if tpe is StringType:
        return (value or "") + "+"
    if tpe is BoolType:
        return not value
    return (value or 0) + 1  # an int at 2**31 - 1 overflows: the SDK's serializer raises ValueError


def render(value: Any) -> str:
    return f"SeenCount({value.seen})" if isinstance(value, SeenCount) else repr(value)


def echo(context: Context, topic: str, value: str) -> None:
    context.send_egress(kafka_egress_message(typename="test/echo", topic=topic, value=value))


def apply(op: Sequence[Any], context: Context, message: Message, types: dict[str, Type]) -> None:
    kind, storage = op[0], context.storage
    if kind == "echo":
        echo(context, op[1], render(getattr(storage, op[1])))
    elif kind == "write":
        setattr(storage, op[1], python_value(types.get(op[1]), op[2]))
    elif kind == "incr":
        setattr(storage, op[1], successor(types[op[1]], getattr(storage, op[1])))
    elif kind == "delete":
        delattr(storage, op[1])
    elif kind == "set_none":  # the SDK refuses None: "To delete a value, please use del."
        setattr(storage, op[1], None)
    elif kind == "read_undeclared":
        getattr(storage, op[1])
    elif kind == "send":
        context.send(message_builder(op[1], op[2], **{op[3]: op[4]}))
    elif kind == "send_after":
        delayed = message_builder(op[2], op[3], str_value=op[4])
        if op[5] is None:
            context.send_after(timedelta(milliseconds=op[1]), delayed)
        else:
            context.send_after(timedelta(milliseconds=op[1]), delayed, cancellation_token=op[5])
    elif kind == "cancel":
        context.cancel_delayed_message(op[1])
    elif kind == "kafka":
        context.send_egress(kafka_egress_message(typename=op[1], topic=op[2], key=op[3], value=op[4]))
    elif kind == "kinesis":
        record = kinesis_egress_message(
            typename=op[1], stream=op[2], partition_key=op[3], value=op[4], explicit_hash_key=op[5]
        )
        context.send_egress(record)
    elif kind == "reply_caller":
        caller = context.caller
        if caller is None:
            echo(context, "no-caller", op[1])
        else:
            context.send(message_builder(caller.typename, caller.id, str_value=op[1]))
    elif kind == "whoami":
        caller = context.caller
        who = f"{context.address.typename}|{context.address.id}|{message.value_typename()}|{caller}"
        echo(context, "whoami", who)
    elif kind == "raise":
        raise EXCEPTIONS[op[1]](op[2])
    else:
        raise AssertionError(f"unknown op {op!r}")


def plan_of(message: Message) -> list[Any]:
    if message.is_type(PLAN):
        plan: list[Any] = message.as_type(PLAN)
        return plan
    return [["kafka", "test/other", "other", None, message.raw_value() or b""]]


def make_function(specs: Sequence[ValueSpec], is_async: bool) -> Callable[..., Any]:
    types = {spec.name: spec.type for spec in specs}
    if is_async:

        async def async_function(context: Context, message: Message) -> None:
            for op in plan_of(message):
                await asyncio.sleep(0)  # give the loop a turn between ops
                apply(op, context, message, types)

        return async_function

    def function(context: Context, message: Message) -> None:
        for op in plan_of(message):
            apply(op, context, message, types)

    return function


@dataclass(frozen=True)
class FunctionModel:
    typename: str
    specs: tuple[ValueSpec, ...]
    is_async: bool

    def __repr__(self) -> str:  # what a falsifying example prints
        specs = []
        for spec in self.specs:
            expiry = (
                f" expire_after_{'call' if spec.after_call else 'write'}={spec.duration}ms" if spec.duration else ""
            )
            specs.append(f"{spec.name}: {spec.type.typename}{expiry}")
        return f"{'async ' if self.is_async else ''}{self.typename}({', '.join(specs)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer prefers this to __repr__
        printer.text(repr(self))


def registry(models: Sequence[FunctionModel]) -> StatefulFunctions:
    functions = StatefulFunctions()
    for model in models:
        functions.register(model.typename, make_function(model.specs, model.is_async), list(model.specs))
    return functions


# ---------------------------------------------------------------------------------------------------------------
# Wire values.
# ---------------------------------------------------------------------------------------------------------------


def state_value(tpe: Type, value: Any) -> TypedValue:
    serialized = tpe.serializer().serialize(python_value(tpe, value))
    return TypedValue(typename=tpe.typename, has_value=True, value=serialized)


def plan_value(plan: Sequence[Any]) -> TypedValue:
    return TypedValue(typename=PLAN.typename, has_value=True, value=PLAN.serializer().serialize(list(plan)))


def decodes(tpe: Type, value: bytes) -> bool:
    try:
        tpe.serializer().deserialize(value)
    except Exception:
        return False
    return True


def split_typename(draw: st.DrawFn, typename: str) -> tuple[str, str]:
    """A target (namespace, type) for `typename`; 'a/b/c' may be sent as ('a', 'b/c') or ('a/b', 'c')."""
    cut = pick(draw, [index for index, char in enumerate(typename) if char == "/"])
    return typename[:cut], typename[cut + 1 :]


def to_function(
    namespace: str,
    type_: str,
    address_id: str,
    state: Sequence[tuple[str, TypedValue]],
    invocations: Sequence[tuple[Address | None, TypedValue]],
) -> bytes:
    request = ToFunction()
    batch = request.invocation
    batch.SetInParent()
    batch.target.namespace, batch.target.type, batch.target.id = namespace, type_, address_id
    for name, value in state:
        batch.state.add(state_name=name, state_value=value)
    for caller, argument in invocations:
        invocation = batch.invocations.add()
        if caller is not None:
            invocation.caller.CopyFrom(caller)
        invocation.argument.CopyFrom(argument)
    body: bytes = request.SerializeToString()
    return body


# ---------------------------------------------------------------------------------------------------------------
# Strategies. All are built once, here: a strategy built inside a draw costs more than the draw itself.
# ---------------------------------------------------------------------------------------------------------------

INDEX = st.integers(min_value=0, max_value=255)  # picks seq[index % len(seq)] from a sequence known only at draw
COUNT = st.sampled_from([1, 2, 2, 3, 3, 4, 0])  # invocations in a batch, ops in a plan: mostly a few
ONE_IN_4 = st.integers(min_value=0, max_value=3).map(lambda n: n == 0)
ONE_IN_8 = st.integers(min_value=0, max_value=7).map(lambda n: n == 0)
SHUFFLES = st.randoms(use_true_random=False)

JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {  # values a plan may write, by state typename
    IntType.typename: INT32,
    StringType.typename: st.text(max_size=8),
    BoolType.typename: st.booleans(),
    SEEN_COUNT.typename: st.integers(min_value=0, max_value=2**40),  # a SeenCount is its count
}
SPEC_SHAPES = st.tuples(
    st.sampled_from(STATE_TYPES),
    st.sampled_from(["never", "never", "after_call", "after_write"]),
    st.integers(min_value=1, max_value=7 * 24 * 3600 * 1000),
)
SPEC_NAME_LISTS = st.tuples(st.sampled_from([1, 2, 2, 3, 4, 0]), st.permutations(SPEC_NAMES)).map(
    lambda drawn: list(drawn[1][: drawn[0]])
)
FUNCTION_TYPENAME_LISTS = st.lists(st.sampled_from(FUNCTION_TYPENAMES), min_size=1, max_size=3, unique=True)
STATE_MODES = st.sampled_from(["present", "present", "present", "absent", "absent", "missing"])
ABSENT_TYPENAMES = st.sampled_from(["own", "", "x/other"])  # has_value=False: the SDK does not look at it
UNDECLARED_NAME_LISTS = st.lists(st.sampled_from(UNDECLARED_NAMES), max_size=2, unique=True)
ANY_TYPED_VALUES = st.builds(TypedValue, typename=texts, has_value=st.booleans(), value=st.binary(max_size=8))

MESSAGE_VALUES = st.one_of(
    st.tuples(st.just("int_value"), INT32),
    st.tuples(st.just("long_value"), INT64),
    st.tuples(st.just("str_value"), texts),
    st.tuples(st.just("bool_value"), st.booleans()),
)
# Ops the SDK runs to completion (their failures, if any, are the data's: e.g. a caller with an empty id).
STATELESS_OPS: st.SearchStrategy[tuple[Any, ...]] = st.one_of(
    st.just(("whoami",)),
    st.tuples(st.just("send"), st.sampled_from(MESSAGE_TARGETS), ids, MESSAGE_VALUES).map(lambda op: (*op[:3], *op[3])),
    st.tuples(
        st.just("send_after"),
        st.integers(min_value=0, max_value=10**9),
        st.sampled_from(MESSAGE_TARGETS),
        ids,
        texts,
        st.none() | tokens,
    ),
    st.tuples(st.just("cancel"), tokens),
    st.tuples(st.just("kafka"), st.sampled_from(EGRESS_TYPENAMES), ids, st.none() | texts, texts),
    st.tuples(st.just("kinesis"), st.sampled_from(EGRESS_TYPENAMES), ids, texts, texts, st.none() | texts),
    st.tuples(st.just("reply_caller"), texts),
)
STATE_OPS = st.tuples(st.sampled_from(["echo", "write", "incr", "delete"]), INDEX)
# Ops that make the SDK raise: in the function, or when it collects the reply.
FAILING_OPS: st.SearchStrategy[tuple[Any, ...]] = st.one_of(
    st.tuples(st.just("raise"), st.sampled_from(sorted(EXCEPTIONS)), texts),
    st.tuples(st.just("read_undeclared"), st.sampled_from(["nope", "zz_extra"])),
    st.tuples(st.just("set_none"), INDEX),  # a declared name, or "nope" when there is none
    st.tuples(st.just("write_out_of_range"), INDEX),  # an int past int32 to a declared state
    # Malformed typenames pass the builders and fail in collect (parse_typename); "" fails in the builder.
    st.tuples(st.just("kafka"), st.sampled_from([*MALFORMED_TYPENAMES, ""]), ids, st.none(), texts),
    st.tuples(st.just("kinesis"), st.sampled_from(MALFORMED_TYPENAMES), ids, texts, texts, st.none()),
    st.tuples(st.just("send"), st.sampled_from(MALFORMED_TYPENAMES), ids, st.just("int_value"), INT32),
    st.tuples(st.just("send"), st.sampled_from(MESSAGE_TARGETS), st.just(""), st.just("int_value"), INT32),
    st.tuples(st.just("kafka"), st.sampled_from(EGRESS_TYPENAMES), st.just(""), st.none(), texts),
)

callers = st.one_of(
    st.none(),
    st.builds(Address, namespace=st.sampled_from(["example", "com.acme"]), type=st.sampled_from(["f0", "x"]), id=ids),
    st.builds(Address, namespace=texts, type=texts, id=texts),  # partial addresses: the SDK's caller is odd
)
other_arguments = st.one_of(INT32.map(lambda n: state_value(IntType, n)), ANY_TYPED_VALUES)


def pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    return items[draw(INDEX) % len(items)]


def draw_value_spec(draw: st.DrawFn, name: str) -> ValueSpec:
    tpe, expiry, millis = draw(SPEC_SHAPES)
    if expiry == "after_call":
        return ValueSpec(name, tpe, expire_after_call=timedelta(milliseconds=millis))
    if expiry == "after_write":
        return ValueSpec(name, tpe, expire_after_write=timedelta(milliseconds=millis))
    return ValueSpec(name, tpe)


def draw_function_model(draw: st.DrawFn, typename: str, min_specs: int = 0) -> FunctionModel:
    names = draw(SPEC_NAME_LISTS)
    for name in SPEC_NAMES:  # top up to min_specs, deterministically
        if len(names) >= min_specs:
            break
        if name not in names:
            names.append(name)
    return FunctionModel(typename, tuple(draw_value_spec(draw, name) for name in names), draw(st.booleans()))


@st.composite
def function_models(draw: st.DrawFn, typename: str, min_specs: int = 0) -> FunctionModel:
    return draw_function_model(draw, typename, min_specs)


def draw_op(draw: st.DrawFn, types: dict[str, Type]) -> tuple[Any, ...]:
    if not types or draw(st.booleans()):
        return draw(STATELESS_OPS)
    kind, index = draw(STATE_OPS)
    names = sorted(types)
    name = names[index % len(names)]
    if kind == "write":
        return ("write", name, draw(JSON_VALUES[types[name].typename]))
    return (kind, name)


def draw_failing_op(draw: st.DrawFn, types: dict[str, Type]) -> tuple[Any, ...]:
    op = draw(FAILING_OPS)
    if op[0] == "set_none":
        return ("set_none", ([*sorted(types), "nope"])[op[1] % (len(types) + 1)])
    if op[0] == "write_out_of_range":
        ints = sorted(name for name, tpe in types.items() if tpe is IntType)
        if not ints:
            return ("raise", "planned", "no int state to overflow")
        return ("write", ints[op[1] % len(ints)], 2**31)  # the SDK's int serializer raises ValueError
    return op


def draw_declared_state(draw: st.DrawFn, specs: Sequence[ValueSpec]) -> tuple[list[tuple[str, TypedValue]], bool]:
    """State entries for `specs`: each present, absent or missing. Also: whether every spec was sent."""
    entries: list[tuple[str, TypedValue]] = []
    complete = True
    for spec in specs:
        mode = draw(STATE_MODES)
        if mode == "missing":
            complete = False
            continue
        if mode == "present":
            entries.append((spec.name, state_value(spec.type, draw(JSON_VALUES[spec.type.typename]))))
        else:
            typename = draw(ABSENT_TYPENAMES)
            typename = spec.type.typename if typename == "own" else typename
            entries.append((spec.name, TypedValue(typename=typename, has_value=False)))
        if draw(ONE_IN_8):  # a duplicate entry, valid too (the SDK keeps the last)
            entries.append((spec.name, state_value(spec.type, draw(JSON_VALUES[spec.type.typename]))))
    return entries, complete


@st.composite
def declared_state(draw: st.DrawFn, specs: Sequence[ValueSpec]) -> tuple[list[tuple[str, TypedValue]], bool]:
    return draw_declared_state(draw, specs)


def draw_undeclared_state(draw: st.DrawFn, specs: Sequence[ValueSpec]) -> list[tuple[str, TypedValue]]:
    declared = {spec.name for spec in specs}
    return [(name, draw(ANY_TYPED_VALUES)) for name in draw(UNDECLARED_NAME_LISTS) if name not in declared]


def shuffled(draw: st.DrawFn, items: list[T]) -> list[T]:
    draw(SHUFFLES).shuffle(items)
    return items


@dataclass(frozen=True)
class Case:
    models: tuple[FunctionModel, ...]
    body: bytes
    typename: str
    address_id: str
    state: tuple[str, ...]  # the batch's state entries, as sent
    plans: tuple[Any, ...]  # per invocation: its ops, or the other argument it carries instead
    label: str = field(repr=False)  # for the statistics

    @property
    def invocations(self) -> int:
        return len(self.plans)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    models = [draw_function_model(draw, typename) for typename in draw(FUNCTION_TYPENAME_LISTS)]
    target = pick(draw, models)
    types = {spec.name: spec.type for spec in target.specs}
    declared, complete = draw_declared_state(draw, target.specs)
    state = shuffled(draw, declared + draw_undeclared_state(draw, target.specs))
    # Each invocation carries a plan, or now and then another argument (which the function sends to an egress).
    plans: list[Any] = [
        draw(other_arguments) if draw(ONE_IN_8) else [draw_op(draw, types) for _ in range(draw(COUNT))]
        for _ in range(draw(COUNT))
    ]
    failure = "-"
    runnable = [plan for plan in plans if isinstance(plan, list)]
    if draw(ONE_IN_4) and runnable:
        op = draw_failing_op(draw, types)
        plan = pick(draw, runnable)
        plan.insert(draw(INDEX) % (len(plan) + 1), op)
        failure = op[0]
    invocations = [(draw(callers), plan_value(plan) if isinstance(plan, list) else plan) for plan in plans]
    address_id = draw(ids)
    namespace, type_ = split_typename(draw, target.typename)
    body = to_function(namespace, type_, address_id, state, invocations)
    mode = "async" if target.is_async else "sync"
    label = f"{mode} function, {'complete' if complete else 'missing'} state, injected failure: {failure}"
    sent = tuple(
        f"{name}={value.typename}:{value.value!r}" if value.has_value else f"{name}={value.typename}:-"
        for name, value in state
    )
    return Case(tuple(models), body, target.typename, address_id, sent, tuple(plans), label)


# ---------------------------------------------------------------------------------------------------------------
# Running both sides.
# ---------------------------------------------------------------------------------------------------------------


def outcome(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except Exception as error:
        return error


def upstream(functions: StatefulFunctions, body: bytes) -> bytes | Exception:
    return outcome(lambda: RequestReplyHandler(functions).handle_sync(body))


def ours(dispatcher: Dispatcher, body: bytes) -> Reply | Exception:
    return outcome(lambda: dispatcher.handle(body))


def ours_on_a_loop(dispatcher: Dispatcher, body: bytes) -> Reply | Exception:
    return outcome(lambda: asyncio.run(dispatcher.handle_async(body)))


def assert_same(
    expected: bytes | Exception, actual: Reply | Exception, typename: str, address_id: str, invocations: int
) -> str:
    """The Dispatcher's outcome is the SDK's; returns a label of the outcome for the statistics."""
    if isinstance(expected, Exception):
        assert isinstance(actual, Exception), f"the SDK raised {expected!r}; the Dispatcher replied {actual!r}"
        assert type(actual) is type(expected), f"the SDK raised {expected!r}; the Dispatcher {actual!r}"
        assert str(actual) == str(expected)
        return f"both raised {type(expected).__name__}"
    assert not isinstance(actual, Exception), f"the SDK replied; the Dispatcher raised {actual!r}"
    expected_reply = FromFunction.FromString(expected)
    actual_reply = FromFunction.FromString(actual.body)
    assert actual_reply == expected_reply, f"\nSDK:\n{expected_reply}\nDispatcher:\n{actual_reply}"
    # The Dispatcher serializes the reply with the SDK's own helpers, so equal messages are equal bytes too.
    assert actual.body == expected
    assert actual.typename == typename
    assert actual.address_id == address_id
    incomplete = expected_reply.HasField("incomplete_invocation_context")
    assert actual.invocations == (0 if incomplete else invocations)
    return "both asked for missing state" if incomplete else "both replied"


def reply_events(body: bytes | Exception) -> None:
    """What the SDK's reply holds, for the statistics (--hypothesis-show-statistics)."""
    if not isinstance(body, bytes) or FromFunction.FromString(body).HasField("incomplete_invocation_context"):
        return
    result = FromFunction.FromString(body).invocation_result
    for mutation in result.state_mutations:
        event(f"reply holds a {FromFunction.PersistedValueMutation.MutationType.Name(mutation.mutation_type)}")
    for delayed in result.delayed_invocations:
        event(f"reply holds a delayed {'cancellation' if delayed.is_cancellation_request else 'message'}")
    event(f"reply holds messages: {bool(result.outgoing_messages)}, egresses: {bool(result.outgoing_egresses)}")


def no_empty_id_records(typename: str, arguments: Sequence[TypedValue]) -> Sequence[Any]:
    raise AssertionError("on_empty_id called for a batch with an id")


@MAIN
@given(cases(), st.booleans(), st.booleans())
def test_the_dispatcher_replies_and_raises_exactly_as_the_sdk(case: Case, on_a_loop: bool, with_hook: bool) -> None:
    event(case.label)
    functions = registry(case.models)
    expected = upstream(functions, case.body)
    dispatcher = Dispatcher(functions, on_empty_id=no_empty_id_records if with_hook else None)
    batch = (case.typename, case.address_id, case.invocations)
    event(assert_same(expected, ours(dispatcher, case.body), *batch))
    reply_events(expected)
    if on_a_loop:
        assert_same(expected, ours_on_a_loop(dispatcher, case.body), *batch)


# ---------------------------------------------------------------------------------------------------------------
# Malformed egress typenames: not a difference, both sides raise ValueError when the reply is collected.
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("egress", ["kafka", "kinesis"])
@pytest.mark.parametrize("typename", MALFORMED_TYPENAMES)
def test_a_malformed_egress_typename_raises_value_error_in_collect_on_both_sides(
    typename: str, egress: str, is_async: bool
) -> None:
    if egress == "kafka":
        op: tuple[Any, ...] = ("kafka", typename, "topic", None, "value")
    else:
        op = ("kinesis", typename, "stream", "key", "value", None)
    # The builders accept it: EgressMessage only refuses an empty typename.
    assert isinstance(kafka_egress_message(typename=typename, topic="topic", value="value"), EgressMessage)
    returned: list[str] = []

    def function(context: Context, message: Message) -> None:
        for each in plan_of(message):
            apply(each, context, message, {})
        returned.append(context.address.id)

    async def async_function(context: Context, message: Message) -> None:
        function(context, message)

    functions = StatefulFunctions()
    functions.register("example/f0", async_function if is_async else function)
    body = to_function("example", "f0", "id", [], [(None, plan_value([op]))])
    expected = upstream(functions, body)
    assert type(expected) is ValueError  # statefun.core.parse_typename, called by collect_egress
    assert (
        str(expected)
        == {
            "noslash": "function type must be of the from namespace/name",  # sic
            "ns/": "function type's name must not be empty",
            "/name": "function type's namespace must not be empty",
        }[typename]
    )
    assert returned == ["id"], "the SDK raised after the function returned: in collect_egress"
    dispatcher = Dispatcher(functions)
    assert_same(expected, ours(dispatcher, body), "example/f0", "id", 1)
    assert_same(expected, ours_on_a_loop(dispatcher, body), "example/f0", "id", 1)
    assert returned == ["id"] * 3


# ---------------------------------------------------------------------------------------------------------------
# The deliberate differences, each asserted by name with the SDK's actual behaviour.
# ---------------------------------------------------------------------------------------------------------------


def one_function() -> StatefulFunctions:
    return registry([FunctionModel("example/f0", (), False)])


def refused(dispatcher: Dispatcher, body: bytes, error: type[Exception]) -> Exception:
    """Both Dispatcher entry points refuse `body` with `error`; the refusal."""
    actual = ours(dispatcher, body)
    assert type(actual) is error, f"expected {error.__name__}, the Dispatcher gave {actual!r}"
    assert type(ours_on_a_loop(dispatcher, body)) is error
    assert isinstance(actual, Exception)
    return actual


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unknown_fields() -> st.SearchStrategy[bytes]:
    """ToFunction bytes holding only fields it does not declare (its one field is `invocation` = 100)."""
    numbers = st.integers(min_value=1, max_value=2**20).filter(lambda number: number != 100)
    varint_field = st.tuples(numbers, st.integers(min_value=0, max_value=2**64 - 1)).map(
        lambda field: varint(field[0] << 3) + varint(field[1])
    )
    bytes_field = st.tuples(numbers, st.binary(max_size=16)).map(
        lambda field: varint(field[0] << 3 | 2) + varint(len(field[1])) + field[1]
    )
    return st.lists(st.one_of(varint_field, bytes_field), max_size=4).map(b"".join)


def test_difference_1_the_empty_body_is_invalid_request_where_the_sdk_raises_attribute_error() -> None:
    functions = one_function()
    error = refused(Dispatcher(functions), b"", InvalidRequest)
    assert "not a ToFunction invocation batch" in str(error)
    expected = upstream(functions, b"")
    assert type(expected) is AttributeError  # ToFunction() has no target: sdk_address_from_pb returned None
    assert str(expected) == "'NoneType' object has no attribute 'typename'"


@DIFFERENCE
@given(st.data())
def test_difference_1_a_body_that_is_not_a_to_function_is_invalid_request(data: st.DataObject) -> None:
    whole = to_function("example", "f0", "id", [], [(None, plan_value([("whoami",)]))])
    body = data.draw(
        st.one_of(
            st.binary(max_size=256),
            st.integers(min_value=1, max_value=len(whole) - 1).map(lambda cut: whole[:cut]),  # truncated
            st.binary(min_size=1, max_size=8).map(lambda tail: whole + b"\xff" + tail),  # trailing garbage
        )
    )
    try:
        parsed: ToFunction | None = ToFunction.FromString(body)
    except DecodeError:
        parsed = None
    # Bytes that happen to hold an invocation batch are the other differences' (or valid) bodies.
    assume(parsed is None or not parsed.HasField("invocation"))
    functions = one_function()
    refused(Dispatcher(functions), body, InvalidRequest)
    expected = upstream(functions, body)
    if parsed is None:
        event("undecodable: the SDK raises DecodeError")
        assert type(expected) is DecodeError
    else:
        event("decodes, no invocation: the SDK raises AttributeError")
        assert type(expected) is AttributeError


@DIFFERENCE
@given(unknown_fields())
def test_difference_2_a_to_function_without_an_invocation_is_invalid_request(body: bytes) -> None:
    assert not ToFunction.FromString(body).HasField("invocation")
    functions = one_function()
    refused(Dispatcher(functions), body, InvalidRequest)
    expected = upstream(functions, body)
    assert type(expected) is AttributeError
    assert str(expected) == "'NoneType' object has no attribute 'typename'"


@DIFFERENCE
@given(
    st.sampled_from([("", ""), ("", "f0"), ("example", ""), ("", "orphan"), ("orphan", "")]),
    st.sampled_from(["", "id"]),
    st.lists(st.booleans(), max_size=3),
)
def test_difference_3_a_batch_without_target_namespace_or_type_is_invalid_request(
    target: tuple[str, str], address_id: str, invocations: list[bool]
) -> None:
    namespace, type_ = target
    # StatefulFunctions.register takes any non-empty typename, so the SDK can serve "orphan/" and "/orphan".
    functions = registry([FunctionModel(typename, (), False) for typename in ("example/f0", "orphan/", "/orphan")])
    arguments = [(None, plan_value([("kafka", "example/greets", "t", None, "v")])) for _ in invocations]
    body = to_function(namespace, type_, address_id, [], arguments)
    error = refused(Dispatcher(functions), body, InvalidRequest)
    assert "names no target function" in str(error)
    expected = upstream(functions, body)
    typename = f"{namespace}/{type_}"
    if not namespace and not type_ and not address_id:
        event("no address at all: the SDK raises AttributeError")
        assert type(expected) is AttributeError
    elif typename not in ("orphan/", "/orphan"):
        event("the SDK raises KeyError")
        assert type(expected) is KeyError
        assert expected.args == (typename,)
    elif invocations and not address_id:
        event("the SDK finds the function, then raises ValueError for the empty id")
        assert type(expected) is ValueError
    else:
        event("the SDK finds the function and runs it")
        assert isinstance(expected, bytes)
        egresses = FromFunction.FromString(expected).invocation_result.outgoing_egresses
        assert [egress.egress_type for egress in egresses] == ["greets"] * len(invocations)


@DIFFERENCE
@given(
    st.text(min_size=1, max_size=10),
    st.text(min_size=1, max_size=10),
    texts,
    st.lists(st.tuples(st.sampled_from(UNDECLARED_NAMES), other_arguments), max_size=2),
)
def test_difference_4_an_unknown_function_type_is_unknown_function(
    namespace: str, type_: str, address_id: str, state: list[tuple[str, TypedValue]]
) -> None:
    typename = f"{namespace}/{type_}"
    assume(typename not in FUNCTION_TYPENAMES)
    functions = registry([FunctionModel(name, (ValueSpec("seen", IntType),), False) for name in FUNCTION_TYPENAMES])
    # Checked first: whatever the id or the state, an unknown type is UnknownFunction.
    body = to_function(namespace, type_, address_id, state, [(None, plan_value([]))])
    for dispatcher in (Dispatcher(functions), Dispatcher(functions, on_empty_id=no_empty_id_records)):
        error = refused(dispatcher, body, UnknownFunction)
        assert isinstance(error, UnknownFunction)
        assert error.typename == typename
    expected = upstream(functions, body)
    assert type(expected) is KeyError  # StatefulFunctions.for_typename
    assert expected.args == (typename,)


@st.composite
def unreadable(draw: st.DrawFn, tpe: Type) -> tuple[str, TypedValue]:
    """A declared state the function cannot read: what is wrong with it, and the value."""
    if draw(st.booleans()):
        other = draw(st.sampled_from([t.typename for t in STATE_TYPES if t is not tpe] + ["", "x/other"]))
        value = draw(st.binary(max_size=8))
        return "typename", TypedValue(typename=other, has_value=True, value=value)
    if tpe is StringType and draw(st.booleans()):
        garbage = b"\x0a\x01\xff"  # the string field, holding invalid UTF-8
    else:
        garbage = draw(st.binary(max_size=12))
        if decodes(tpe, garbage):
            garbage = b"\x0f" + garbage  # a first tag of wire type 7, which does not exist
        assert not decodes(tpe, garbage)
    return "bytes", TypedValue(typename=tpe.typename, has_value=True, value=garbage)


@DIFFERENCE
@given(st.data())
def test_difference_5_state_the_function_could_not_read_is_invalid_request(data: st.DataObject) -> None:
    # Where the SDK raises because the function read a state it cannot decode (TypeError "Type mismatch" for
    # another typename, DecodeError for bad bytes), the Dispatcher refuses the batch (400, the request's fault)
    # instead of a 500 the runtime would retry. Everywhere else it replies exactly as the SDK: missing state is
    # asked for, an unread bad state changes nothing.
    model = data.draw(function_models("example/f0", min_specs=1))
    bad = data.draw(st.sampled_from(model.specs))
    what, bad_value = data.draw(unreadable(bad.type))
    others, complete = data.draw(declared_state([spec for spec in model.specs if spec is not bad]))
    state = data.draw(st.permutations([*others, (bad.name, bad_value)]))
    reads = data.draw(st.booleans())
    plan = [("echo", spec.name) for spec in model.specs] if reads else [("kafka", "example/greets", "t", None, "v")]
    invocations = data.draw(st.sampled_from([1, 1, 1, 2, 3, 0]))
    body = to_function("example", "f0", "id", state, [(None, plan_value(plan))] * invocations)
    functions = registry([model])
    expected = upstream(functions, body)
    if complete and invocations and reads:
        event(f"unreadable {what}: the SDK raises in the function, the Dispatcher refuses")
        if what == "typename":  # statefun.utils.from_typed_value
            assert type(expected) is TypeError
            assert str(expected).startswith("Type mismatch")
        else:  # the type's deserializer
            assert type(expected) is DecodeError
        error = refused(Dispatcher(functions), body, InvalidRequest)
        assert repr(bad.name) in str(error)
        assert error.__cause__ is not None and type(error.__cause__) is type(expected)
        return
    event("missing state, or the bad state not read: the same reply as the SDK")
    assert isinstance(expected, bytes)
    assert_same(expected, ours(Dispatcher(functions), body), "example/f0", "id", invocations if complete else 0)


@pytest.mark.parametrize("bad_first", [True, False], ids=["bad-then-good", "good-then-bad"])
def test_difference_5_a_duplicate_state_entry_counts_as_the_sdk_counts_it(bad_first: bool) -> None:
    # The runtime sends each state once; given two entries for one name, the SDK's resolve keeps the last, and
    # so does the Dispatcher's look for unreadable state.
    functions = registry([FunctionModel("example/f0", (ValueSpec("seen", IntType),), False)])
    bad = TypedValue(typename=StringType.typename, has_value=True, value=b"")
    good = state_value(IntType, 5)
    state = [("seen", bad), ("seen", good)] if bad_first else [("seen", good), ("seen", bad)]
    body = to_function("example", "f0", "id", state, [(None, plan_value([("echo", "seen")]))])
    expected = upstream(functions, body)
    if bad_first:  # the SDK reads the good last entry
        assert isinstance(expected, bytes)
        (egress,) = FromFunction.FromString(expected).invocation_result.outgoing_egresses
        assert kafka_egress_message(typename="test/echo", topic="seen", value="5").typed_value == egress.argument
        assert_same(expected, ours(Dispatcher(functions), body), "example/f0", "id", 1)
    else:
        assert type(expected) is TypeError
        refused(Dispatcher(functions), body, InvalidRequest)


@st.composite
def empty_id_batches(draw: st.DrawFn) -> tuple[FunctionModel, bool, list[tuple[Address | None, TypedValue]], bytes]:
    model = draw_function_model(draw, "example/f0")
    declared, complete = draw_declared_state(draw, model.specs)
    state = shuffled(draw, declared + draw_undeclared_state(draw, model.specs))
    arguments = draw(st.lists(st.one_of(other_arguments, st.just(plan_value([("whoami",)]))), max_size=4))
    invocations = [(draw(callers), argument) for argument in arguments]
    return model, complete, invocations, to_function("example", "f0", "", state, invocations)


@DIFFERENCE
@given(empty_id_batches())
def test_difference_6_an_empty_id_without_a_hook_is_invalid_request(
    batch: tuple[FunctionModel, bool, list[tuple[Address | None, TypedValue]], bytes],
) -> None:
    model, complete, invocations, body = batch
    functions = registry([model])
    error = refused(Dispatcher(functions), body, InvalidRequest)
    assert "empty id" in str(error)
    expected = upstream(functions, body)
    if not complete:
        event("state missing: the SDK asks for it")
        assert isinstance(expected, bytes)
        assert FromFunction.FromString(expected).HasField("incomplete_invocation_context")
    elif invocations:
        event("the SDK raises ValueError building the Message")
        assert type(expected) is ValueError
        assert str(expected) == "target_id can not be missing"
    else:
        event("empty batch: the SDK replies nothing")
        assert expected == b""


@DIFFERENCE
@given(empty_id_batches(), st.lists(st.sampled_from(EGRESS_TYPENAMES), max_size=3), st.booleans())
def test_difference_6_an_empty_id_with_a_hook_replies_exactly_the_hooks_egresses(
    batch: tuple[FunctionModel, bool, list[tuple[Address | None, TypedValue]], bytes],
    kinesis: list[str],
    on_a_loop: bool,
) -> None:
    model, _, invocations, body = batch
    calls: list[tuple[str, list[TypedValue]]] = []
    returned: list[EgressMessage] = []

    def dead_letter(typename: str, arguments: Sequence[TypedValue]) -> Sequence[Any]:
        calls.append((typename, list(arguments)))
        records = [
            kafka_egress_message(typename="example/dlq", topic="dlq", key=str(index), value=argument.value)
            for index, argument in enumerate(arguments)
        ]
        records += [kinesis_egress_message(typename=t, stream="s", partition_key="k", value="v") for t in kinesis]
        returned.extend(records)
        return records

    def never_run(context: Context, message: Message) -> None:
        raise AssertionError("the function ran for an empty id")

    functions = StatefulFunctions()
    functions.register("example/f0", never_run, list(model.specs))
    dispatcher = Dispatcher(functions, on_empty_id=dead_letter)
    reply = ours_on_a_loop(dispatcher, body) if on_a_loop else ours(dispatcher, body)
    assert isinstance(reply, Reply), reply
    assert calls == [("example/f0", [argument for _, argument in invocations])]
    expected = FromFunction()
    expected.invocation_result.SetInParent()  # present even with no egress
    for message in returned:
        namespace, _, name = message.typename.rpartition("/")
        expected.invocation_result.outgoing_egresses.add(
            egress_namespace=namespace, egress_type=name, argument=message.typed_value
        )
    assert FromFunction.FromString(reply.body) == expected  # nothing but the egresses: no state, no messages
    assert reply.body == expected.SerializeToString()
    if not returned:
        assert reply.body == b"\xa2\x06\x00"  # an empty invocation_result (the SDK would reply b"")
    assert reply == Reply(reply.body, "example/f0", "", len(invocations))
    # Missing state does not matter on this path (the SDK would have asked for it); the function never ran.


@pytest.mark.parametrize("typename", MALFORMED_TYPENAMES)
def test_difference_6_a_hooks_malformed_egress_typename_raises_the_sdks_value_error(typename: str) -> None:
    def dead_letter(_: str, arguments: Sequence[TypedValue]) -> Sequence[Any]:
        return [kafka_egress_message(typename=typename, topic="dlq", value=b"") for _ in arguments]

    body = to_function("example", "f0", "", [], [(None, plan_value([]))])
    error = refused(Dispatcher(one_function(), on_empty_id=dead_letter), body, ValueError)
    # What the SDK raises for the same EgressMessage, collecting a function's reply.
    functions = StatefulFunctions()
    functions.register(
        "example/f0", lambda context, message: context.send_egress(dead_letter("", [message.typed_value])[0])
    )
    expected = upstream(functions, to_function("example", "f0", "id", [], [(None, plan_value([]))]))
    assert type(expected) is ValueError
    assert str(error) == str(expected)
