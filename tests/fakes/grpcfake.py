"""A tiny in-process gRPC server for fakes of Google APIs, with fault injection shared by all of them.

Handlers receive proto-plus request messages and return proto-plus or raw protobuf messages. Faults are
queued per method: ``"unavailable"`` (503), ``"exhausted"`` (429) fail before the call is handled;
``"lost"`` handles the call, then fails with DEADLINE_EXCEEDED — the change applied but the caller never
heard of it. ``"service_disabled"`` and ``"iam_denied"`` answer 403 PERMISSION_DENIED as Google does while an
API is disabled or an IAM grant has not propagated yet, with the google.rpc.ErrorInfo detail that names the
reason (the shape Google returns: reason SERVICE_DISABLED with metadata service, or IAM_PERMISSION_DENIED,
domain googleapis.com; Google APIs "Errors" guide, and the SERVICE_DISABLED message that says "If you
enabled this API recently, wait a few minutes for the action to propagate to our systems and retry").

When a :class:`tests.fakes.iam.Project` is set (``fake.project``), every call is first checked against it
(authentication, API enabled, the method's IAM permission; tests/fakes/iam.py) and refused in Google's shape.
Callers reach the server two ways: :meth:`GrpcFake.channel` without credentials is a plain channel (no
``authorization``: the legacy cloud's owner, refused by a twin project), and ``channel(credentials)`` is a
channel with local-connection credentials, on which google-auth's own metadata plugin sends each call's
``authorization: Bearer …`` from the credentials, as on a real Google channel.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from tests.fakes.iam import Project

_CODES = {
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "internal": grpc.StatusCode.INTERNAL,
}


_DENIED = ("service_disabled", "iam_denied")


def _denied(fault: str, service: str) -> Any:
    from google.protobuf import any_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status

    parts = service.split(".")  # google.cloud.run.v2.Services → run.googleapis.com
    api = f"{parts[2] if parts[1] in ('cloud', 'devtools') else parts[1]}.googleapis.com"
    if fault == "service_disabled":
        message = (f"{api} has not been used in project 123 before or it is disabled. Enable it by visiting "
                   f"https://console.developers.google.com/apis/api/{api}/overview?project=123 then retry. If you "
                   "enabled this API recently, wait a few minutes for the action to propagate to our systems and "
                   "retry.")
        info = error_details_pb2.ErrorInfo(reason="SERVICE_DISABLED", domain="googleapis.com",
                                           metadata={"service": api, "consumer": "projects/123"})
    else:
        message = "Permission denied on resource (or it may not exist)."
        info = error_details_pb2.ErrorInfo(reason="IAM_PERMISSION_DENIED", domain="iam.googleapis.com")
    detail = any_pb2.Any()
    detail.Pack(info)
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=message,
                                                  details=[detail]))


class Faults:
    def __init__(self) -> None:
        self._queued: dict[str, deque[str]] = defaultdict(deque)
        self.lock = threading.Lock()

    def add(self, method: str, *faults: str) -> None:
        with self.lock:
            self._queued[method].extend(faults)

    def burst(self, method: str, kind: str, count: int) -> None:
        self.add(method, *([kind] * count))

    def next(self, method: str) -> str | None:
        with self.lock:
            queue = self._queued.get(method)
            return queue.popleft() if queue else None

    def clear(self) -> None:
        with self.lock:
            self._queued.clear()


class GrpcFake:
    """Serves several fake gRPC services on one localhost port."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.calls: list[tuple[str, str]] = []  # (method, resource) of every call that got through
        self._handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = defaultdict(dict)
        self._server: grpc.Server | None = None
        self.address = ""
        self.secure_address = ""  # local-connection credentials: calls carry their credentials' token
        self.project: Project | None = None  # when set, every call is checked against it (tests/fakes/iam.py)
        # called with (method, request) as each call arrives: where a test interrupts its client mid-call
        self.before: Callable[[str, Any], None] | None = None

    def add(self, service: str, method: str, fn: Callable[[Any], Any], request_cls: Any) -> None:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            if self.before is not None:
                self.before(method, request)
            fault = self.faults.next(method)
            if fault in _CODES:
                context.abort(_CODES[fault], f"injected {fault}")
            if fault in _DENIED:
                context.abort_with_status(_denied(fault, service))
            if self.project is not None:
                from tests.fakes.iam import check_grpc

                denial = check_grpc(self.project, f"{service}/{method}", request, context.invocation_metadata())
                if denial is not None:
                    context.abort_with_status(denial.grpc_status())
            try:
                response = fn(request)
            except FakeError as exc:
                context.abort(exc.code, exc.message)
            self.calls.append((method, _resource(request)))
            if fault == "lost":
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected: applied, response lost")
            return response

        self._handlers[service][method] = grpc.unary_unary_rpc_method_handler(
            handler, request_deserializer=_deserializer(request_cls), response_serializer=_serialize
        )

    def start(self) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((_Handlers(self._handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        secure = server.add_secure_port("127.0.0.1:0", local)
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        self.secure_address = f"127.0.0.1:{secure}"
        return self.address

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)

    def channel(self, credentials: Any = None, sending: Callable[[str, Any], None] | None = None) -> grpc.Channel:
        """A channel to the fakes; with google.auth *credentials*, each call carries their bearer token.
        *sending* is called with (method, request) in the caller's own thread before each call leaves it:
        where a test stops one client for good (a killed process), which the server-side ``before`` cannot
        do, as the client's own deadline would end the wait there and let it go on."""
        if credentials is None:
            channel = grpc.insecure_channel(self.address)
        else:
            from google.api_core import grpc_helpers

            local = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
            channel = grpc_helpers.create_channel(self.secure_address, credentials=credentials, ssl_credentials=local)
        return channel if sending is None else grpc.intercept_channel(channel, _Sending(sending))

    def mutations(self, prefix: str = "") -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0].split("/")[-1].startswith(_MUTATING) and c[0].startswith(prefix)]


_MUTATING = ("Create", "Update", "Delete", "Run", "Cancel", "Set")


class _Sending(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, hook: Callable[[str, Any], None]) -> None:
        self.hook = hook

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        self.hook(details.method.rsplit("/", 1)[-1], request)
        return continuation(details, request)


class _Handlers(grpc.GenericRpcHandler):
    """The handlers registered so far, looked up per call: a fake may join a running server."""

    def __init__(self, handlers: dict[str, dict[str, grpc.RpcMethodHandler]]) -> None:
        self.handlers = handlers

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = str(details.method).lstrip("/").partition("/")
        return self.handlers.get(service, {}).get(method)


class FakeError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _resource(request: Any) -> str:
    for attr in ("name", "parent", "service", "build"):
        value = getattr(request, attr, None)
        if isinstance(value, str) and value:
            return value
        if value is not None and getattr(value, "name", None):
            return str(value.name)
    return ""


def _deserializer(request_cls: Any) -> Callable[[bytes], Any]:
    if hasattr(request_cls, "deserialize"):
        return request_cls.deserialize  # type: ignore[no-any-return]
    return request_cls.FromString  # type: ignore[no-any-return]


def _serialize(message: Any) -> bytes:
    if hasattr(type(message), "serialize"):
        return type(message).serialize(message)  # type: ignore[no-any-return]
    return message.SerializeToString()  # type: ignore[no-any-return]


def done_operation(name: str, response: Any = None, error: tuple[int, str] | None = None) -> Any:
    """A finished google.longrunning Operation carrying *response* (proto-plus) or an error."""
    from google.longrunning import operations_pb2
    from google.protobuf import any_pb2
    from google.rpc import status_pb2

    op = operations_pb2.Operation(name=name, done=True)
    if error is not None:
        op.error.CopyFrom(status_pb2.Status(code=error[0], message=error[1]))
    elif response is not None:
        packed = any_pb2.Any()
        packed.Pack(type(response).pb(response))
        op.response.CopyFrom(packed)
    return op
