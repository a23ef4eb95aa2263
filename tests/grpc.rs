//! GRPCRoute end to end: a real tonic client calls through `portcullis serve`
//! (h2c on an HTTP listener) to real tonic servers behind Services with
//! `appProtocol: kubernetes.io/h2c`.
//!
//! The protobuf messages are written by hand with `prost::Message` and the
//! server is a hand-written tonic service, so no protoc or build script is
//! needed.

mod e2e;

use e2e::gateway::{find_object, has_condition, Gateway};
use e2e::manifests::{docs, gateway, http_listener, service, CLASS};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::codegen::{http, BoxFuture, BoxStream, Context, Poll, Service};
use tonic::server::{Grpc as ServerGrpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

/// The request of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// Free text echoed back.
    #[prost(string, tag = "1")]
    pub text: String,
    /// How many replies `Count` streams.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// The reply of every method.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// Which server answered.
    #[prost(string, tag = "1")]
    pub backend: String,
    /// The method that answered.
    #[prost(string, tag = "2")]
    pub method: String,
    /// The request text.
    #[prost(string, tag = "3")]
    pub text: String,
    /// Position in a stream.
    #[prost(uint32, tag = "4")]
    pub seq: u32,
}

/// `test.Echo`: `Say`, `Hello` (unary, answer with the server's name),
/// `Count` (server streaming: `count` replies) and `Fail` (NOT_FOUND).
#[derive(Clone)]
struct EchoServer {
    name: Arc<str>,
}

impl NamedService for EchoServer {
    const NAME: &'static str = "test.Echo";
}

#[derive(Clone)]
struct Unary {
    name: Arc<str>,
    method: &'static str,
}

impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let (name, method) = (self.name.to_string(), self.method);
        Box::pin(async move {
            if method == "Fail" {
                return Err(Status::not_found("no such thing"));
            }
            Ok(Response::new(EchoReply {
                backend: name,
                method: method.to_string(),
                text: request.into_inner().text,
                seq: 0,
            }))
        })
    }
}

#[derive(Clone)]
struct Count {
    name: Arc<str>,
}

impl ServerStreamingService<EchoRequest> for Count {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<EchoRequest>) -> Self::Future {
        let name = self.name.to_string();
        Box::pin(async move {
            let req = request.into_inner();
            let items: Vec<Result<EchoReply, Status>> = (0..req.count)
                .map(|seq| {
                    Ok(EchoReply {
                        backend: name.clone(),
                        method: "Count".into(),
                        text: req.text.clone(),
                        seq,
                    })
                })
                .collect();
            let stream: Self::ResponseStream = Box::pin(tonic::codegen::tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

impl<B> Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let name = self.name.clone();
        let method = match req.uri().path() {
            "/test.Echo/Say" => Some("Say"),
            "/test.Echo/Hello" => Some("Hello"),
            "/test.Echo/Fail" => Some("Fail"),
            "/test.Echo/Count" => None,
            _ => {
                return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) })
            }
        };
        Box::pin(async move {
            let mut grpc = ServerGrpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            Ok(match method {
                Some(method) => grpc.unary(Unary { name, method }, req).await,
                None => grpc.server_streaming(Count { name }, req).await,
            })
        })
    }
}

/// Starts a tonic server named `name` on an ephemeral loopback port, served
/// by hyper's HTTP/2 connection (h2c with prior knowledge, as gRPC clients
/// speak it).
async fn start_server(name: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let svc = EchoServer { name: name.into() };
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let hyper_svc = hyper::service::service_fn(move |req| svc.clone().call(req));
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });
    (addr, task)
}

const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: echo
  namespace: default
spec:
  parentRefs:
    - name: grpc
  rules:
    - matches:
        - method: {type: Exact, service: test.Echo, method: Say}
      backendRefs:
        - {name: a, port: 8080}
    - matches:
        - method: {type: Exact, service: test.Echo, method: Say}
          headers:
            - {name: x-variant, value: canary}
      backendRefs:
        - {name: b, port: 8080}
    - matches:
        - method: {type: Exact, service: test.Echo, method: Hello}
      backendRefs:
        - {name: b, port: 8080}
    - matches:
        - method: {service: test.Echo, method: Count}
        - method: {service: test.Echo, method: Fail}
      backendRefs:
        - {name: a, port: 8080}
";

/// Two tonic servers `a` and `b` behind a gateway with one HTTP listener on
/// port 80 and the GRPCRoute above.
struct Setup {
    gw: Gateway,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for s in &self._servers {
            s.abort();
        }
    }
}

async fn setup() -> Setup {
    let (a, ta) = start_server("a").await;
    let (b, tb) = start_server("b").await;
    let gw = Gateway::start(&[
        (
            "gateway.yaml",
            docs(&[
                CLASS.to_string(),
                gateway("grpc", &[http_listener("http", 80, None)]),
            ]),
        ),
        (
            "backends.yaml",
            docs(&[
                service("a", a.port(), Some("kubernetes.io/h2c")),
                service("b", b.port(), Some("kubernetes.io/h2c")),
            ]),
        ),
        ("route.yaml", ROUTE.to_string()),
    ])
    .await;
    Setup {
        gw,
        _servers: vec![ta, tb],
    }
}

async fn client(gw: &Gateway) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.addr(80)))
        .expect("valid endpoint")
        .connect_timeout(e2e::WAIT)
        .timeout(e2e::WAIT)
        .connect()
        .await
        .expect("connect to the gateway");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    grpc
}

async fn unary(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    request: Request<EchoRequest>,
) -> Result<EchoReply, Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        ProstCodec::<EchoRequest, EchoReply>::default(),
    )
    .await
    .map(Response::into_inner)
}

fn req(text: &str) -> Request<EchoRequest> {
    Request::new(EchoRequest {
        text: text.into(),
        count: 0,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_are_routed_by_exact_method() {
    let s = setup().await;
    let st = s.gw.status().await;
    let route = find_object(&st, "GRPCRoute", "echo").expect("GRPCRoute in /status");
    assert!(has_condition(route, "Accepted", "True", None), "{route}");
    let mut grpc = client(&s.gw).await;
    let say = unary(&mut grpc, "/test.Echo/Say", req("one"))
        .await
        .expect("Say");
    assert_eq!(
        (say.backend.as_str(), say.method.as_str(), say.text.as_str()),
        ("a", "Say", "one")
    );
    let hello = unary(&mut grpc, "/test.Echo/Hello", req("two"))
        .await
        .expect("Hello");
    assert_eq!(
        (hello.backend.as_str(), hello.method.as_str()),
        ("b", "Hello")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_match_selects_the_canary_backend() {
    let s = setup().await;
    let mut grpc = client(&s.gw).await;
    let mut r = req("canary");
    r.metadata_mut()
        .insert("x-variant", "canary".parse().expect("ASCII metadata"));
    let reply = unary(&mut grpc, "/test.Echo/Say", r)
        .await
        .expect("Say with header");
    assert_eq!(reply.backend, "b", "the rule with the header match wins");
    let mut r = req("other");
    r.metadata_mut()
        .insert("x-variant", "stable".parse().expect("ASCII metadata"));
    let reply = unary(&mut grpc, "/test.Echo/Say", r)
        .await
        .expect("Say with other header");
    assert_eq!(reply.backend, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_call_streams_every_message() {
    let s = setup().await;
    let mut grpc = client(&s.gw).await;
    grpc.ready().await.expect("ready");
    let mut stream = grpc
        .server_streaming(
            Request::new(EchoRequest {
                text: "stream".into(),
                count: 50,
            }),
            http::uri::PathAndQuery::from_static("/test.Echo/Count"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .expect("Count starts")
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(reply) = tokio::time::timeout(e2e::WAIT, stream.message())
        .await
        .expect("next message in time")
        .expect("stream message")
    {
        assert_eq!(reply.backend, "a");
        seqs.push(reply.seq);
    }
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_error_status_arrives_intact() {
    let s = setup().await;
    let mut grpc = client(&s.gw).await;
    let err = unary(&mut grpc, "/test.Echo/Fail", req("x"))
        .await
        .expect_err("Fail fails");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no such thing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_matching_no_rule_is_not_ok() {
    let s = setup().await;
    let mut grpc = client(&s.gw).await;
    let err = unary(&mut grpc, "/test.Other/Nope", req("x"))
        .await
        .expect_err("no rule matches test.Other/Nope");
    assert_ne!(err.code(), Code::Ok);
    assert!(
        matches!(err.code(), Code::Unimplemented | Code::NotFound),
        "unexpected status {err:?}"
    );
}
