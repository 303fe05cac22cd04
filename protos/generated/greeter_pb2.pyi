from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetterReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEAD_LETTER_REASON_UNSPECIFIED: _ClassVar[DeadLetterReason]
    UNDECODABLE: _ClassVar[DeadLetterReason]
    INVALID_UTF8: _ClassVar[DeadLetterReason]
    EMPTY_NAME: _ClassVar[DeadLetterReason]
    NAME_TOO_LONG: _ClassVar[DeadLetterReason]
    NAME_MISMATCH: _ClassVar[DeadLetterReason]
    UNEXPECTED_TYPE: _ClassVar[DeadLetterReason]
DEAD_LETTER_REASON_UNSPECIFIED: DeadLetterReason
UNDECODABLE: DeadLetterReason
INVALID_UTF8: DeadLetterReason
EMPTY_NAME: DeadLetterReason
NAME_TOO_LONG: DeadLetterReason
NAME_MISMATCH: DeadLetterReason
UNEXPECTED_TYPE: DeadLetterReason

class GreetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GreetResponse(_message.Message):
    __slots__ = ("name", "greeting")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GREETING_FIELD_NUMBER: _ClassVar[int]
    name: str
    greeting: str
    def __init__(self, name: _Optional[str] = ..., greeting: _Optional[str] = ...) -> None: ...

class SeenCount(_message.Message):
    __slots__ = ("seen",)
    SEEN_FIELD_NUMBER: _ClassVar[int]
    seen: int
    def __init__(self, seen: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("function_type", "address_id", "reason", "detail", "value_typename", "value")
    FUNCTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPENAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    function_type: str
    address_id: str
    reason: DeadLetterReason
    detail: str
    value_typename: str
    value: bytes
    def __init__(self, function_type: _Optional[str] = ..., address_id: _Optional[str] = ..., reason: _Optional[_Union[DeadLetterReason, str]] = ..., detail: _Optional[str] = ..., value_typename: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
