//! A local stand-in for the Lambda Runtime API (version 2018-06-01), to run
//! a real function binary the way Lambda does, on loopback.
//!
//! ```text
//! let api = RuntimeApi::start().await?;
//! let mut function = FunctionProcess::spawn(&function_binary("token-refresh"), &api, "rt-refresh", &[..])?;
//! let done = function.invoke(&api, &json!({}), Duration::from_secs(30)).await?;
//! let output = function.stop().await;          // everything it printed
//! ```
//!
//! The binary long-polls `GET /runtime/invocation/next`, which answers with
//! the next queued event and the `Lambda-Runtime-*` headers; it then posts
//! `/runtime/invocation/{id}/response` or `/error`, or `/runtime/init/error`
//! if it cannot start. Each [`Completion`] carries the instants of every step
//! (queued, taken by the function, answered), and [`RuntimeApi::first_poll`]
//! the instant the function finished its initialisation and asked for work:
//! what a cold-start measurement needs.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long an invocation may run, as told to the function in
/// `Lambda-Runtime-Deadline-Ms` (the template's refresh timeout).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(240);

/// A running stand-in of the Runtime API.
pub struct RuntimeApi {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    function_arn: String,
    queue_in: mpsc::UnboundedSender<String>,
    queue_out: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    invocations: Mutex<HashMap<String, Pending>>,
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
    init_error: Mutex<Option<(Option<String>, Vec<u8>)>>,
    next_id: Mutex<u64>,
}

struct Pending {
    event: Vec<u8>,
    deadline: Duration,
    queued_at: Instant,
    fetched_at: Option<Instant>,
    reply: oneshot::Sender<Completion>,
}

/// What became of one invocation, and when.
#[derive(Debug)]
pub struct Completion {
    pub request_id: String,
    pub outcome: InvocationOutcome,
    pub queued_at: Instant,
    /// When the function took the event (`None` if it never did).
    pub fetched_at: Option<Instant>,
    pub completed_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// The body of `/invocation/{id}/response`.
    Response(Vec<u8>),
    /// `/invocation/{id}/error`: `Lambda-Runtime-Function-Error-Type` and body.
    Error {
        error_type: Option<String>,
        body: Vec<u8>,
    },
    /// `/init/error`, posted before the function could take this event.
    InitError {
        error_type: Option<String>,
        body: Vec<u8>,
    },
}

impl InvocationOutcome {
    /// The response as JSON, or why there is none.
    pub fn response_json(&self) -> Result<Value, String> {
        match self {
            Self::Response(body) => serde_json::from_slice(body).map_err(|e| {
                format!(
                    "the response is not JSON ({e}): {}",
                    String::from_utf8_lossy(body)
                )
            }),
            other => Err(format!("the function answered {other}")),
        }
    }
}

impl std::fmt::Display for InvocationOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, error_type, body) = match self {
            Self::Response(body) => {
                return write!(f, "a response: {}", String::from_utf8_lossy(body));
            }
            Self::Error { error_type, body } => ("an error", error_type, body),
            Self::InitError { error_type, body } => ("an init error", error_type, body),
        };
        write!(
            f,
            "{kind} ({}): {}",
            error_type.as_deref().unwrap_or("no type"),
            String::from_utf8_lossy(body)
        )
    }
}

/// A queued event; await [`Invocation::completion`] for what came back.
pub struct Invocation {
    pub request_id: String,
    reply: oneshot::Receiver<Completion>,
}

impl Invocation {
    /// Waits for the response or error. Never returns if the function never
    /// answers: see [`FunctionProcess::invoke`] for a bounded wait.
    pub async fn completion(self) -> Result<Completion, String> {
        self.reply.await.map_err(|_| {
            format!(
                "the Runtime API stopped before {} completed",
                self.request_id
            )
        })
    }
}

impl RuntimeApi {
    /// Serves on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (queue_in, queue_out) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:roomtoken-test".into(),
            queue_in,
            queue_out: tokio::sync::Mutex::new(queue_out),
            invocations: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
            polled: Notify::new(),
            init_error: Mutex::new(None),
            next_id: Mutex::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // Ends when the test drops the RuntimeApi (the task is aborted).
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            shared,
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Queues an event with the default deadline.
    pub fn invoke(&self, event: &Value) -> Invocation {
        self.invoke_with_deadline(event, DEFAULT_DEADLINE)
    }

    /// Queues an event; the function is told it has `deadline` to answer.
    pub fn invoke_with_deadline(&self, event: &Value, deadline: Duration) -> Invocation {
        let request_id = {
            let mut next = lock(&self.shared.next_id);
            *next += 1;
            format!("00000000-0000-4000-8000-{:012x}", *next)
        };
        let (reply, receiver) = oneshot::channel();
        let pending = Pending {
            event: serde_json::to_vec(event).unwrap_or_default(),
            deadline,
            queued_at: Instant::now(),
            fetched_at: None,
            reply,
        };
        let init_error = lock(&self.shared.init_error).clone();
        match init_error {
            // The function already failed to start: this event never runs.
            Some((error_type, body)) => complete(
                pending,
                request_id.clone(),
                InvocationOutcome::InitError { error_type, body },
            ),
            None => {
                lock(&self.shared.invocations).insert(request_id.clone(), pending);
                // The receiver lives as long as `shared`, which `self` holds.
                let _ = self.shared.queue_in.send(request_id.clone());
            }
        }
        Invocation {
            request_id,
            reply: receiver,
        }
    }

    /// The instant the function first asked for an event, waiting for it.
    pub async fn first_poll(&self) -> Instant {
        loop {
            let notified = self.shared.polled.notified();
            if let Some(at) = *lock(&self.shared.first_poll) {
                return at;
            }
            notified.await;
        }
    }

    /// What the function posted to `/init/error`, if it did.
    pub fn init_error(&self) -> Option<(Option<String>, Vec<u8>)> {
        lock(&self.shared.init_error).clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding it already failed; go on.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn complete(pending: Pending, request_id: String, outcome: InvocationOutcome) {
    // The test may have stopped waiting; nothing to tell then.
    let _ = pending.reply.send(Completion {
        request_id,
        outcome,
        queued_at: pending.queued_at,
        fetched_at: pending.fetched_at,
        completed_at: Instant::now(),
    });
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    {
        let mut first = lock(&shared.first_poll);
        if first.is_none() {
            *first = Some(Instant::now());
        }
    }
    shared.polled.notify_waiters();
    let mut queue = shared.queue_out.lock().await;
    loop {
        let Some(request_id) = queue.recv().await else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let mut invocations = lock(&shared.invocations);
        let Some(pending) = invocations.get_mut(&request_id) else {
            continue;
        };
        pending.fetched_at = Some(Instant::now());
        let deadline_ms = SystemTime::now()
            .checked_add(pending.deadline)
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_millis())
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set("lambda-runtime-aws-request-id", request_id.clone());
        set("lambda-runtime-deadline-ms", deadline_ms.to_string());
        set(
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.clone(),
        );
        set(
            "lambda-runtime-trace-id",
            format!(
                "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
                deadline_ms / 1000,
                deadline_ms,
                deadline_ms
            ),
        );
        set("content-type", "application/json".into());
        return (StatusCode::OK, headers, pending.event.clone()).into_response();
    }
}

fn finish(shared: &Shared, request_id: &str, outcome: InvocationOutcome) -> Response {
    match lock(&shared.invocations).remove(request_id) {
        Some(pending) => {
            complete(pending, request_id.to_owned(), outcome);
            (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            r#"{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}"#,
        )
            .into_response(),
    }
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    finish(&shared, &id, InvocationOutcome::Response(body.to_vec()))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = InvocationOutcome::Error {
        error_type: error_type(&headers),
        body: body.to_vec(),
    };
    finish(&shared, &id, outcome)
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let error = (error_type(&headers), body.to_vec());
    *lock(&shared.init_error) = Some(error.clone());
    let pending: Vec<(String, Pending)> = lock(&shared.invocations).drain().collect();
    for (request_id, pending) in pending {
        let (error_type, body) = error.clone();
        complete(
            pending,
            request_id,
            InvocationOutcome::InitError { error_type, body },
        );
    }
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

/// A function binary running against a [`RuntimeApi`], with a clean
/// environment: the Lambda variables, then the caller's.
pub struct FunctionProcess {
    child: tokio::process::Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
    pub spawned_at: Instant,
}

/// Everything a function printed, once it is stopped.
#[derive(Debug)]
pub struct FunctionOutput {
    pub stdout: String,
    pub stderr: String,
}

impl FunctionOutput {
    /// The stdout lines that are JSON objects (log lines in JSON format and
    /// embedded-metric documents).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }
}

impl FunctionProcess {
    /// Starts `binary` as Lambda would: `AWS_LAMBDA_RUNTIME_API`, the
    /// function's name, memory and version, JSON log format, a region; then
    /// `env` (which may override any of them). Nothing else is inherited.
    pub fn spawn(
        binary: &Path,
        api: &RuntimeApi,
        function_name: &str,
        env: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let task_root = binary.parent().unwrap_or(Path::new("/"));
        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("TZ", ":UTC")
            .env("LAMBDA_TASK_ROOT", task_root)
            .env("_HANDLER", "bootstrap")
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]0123456789abcdef",
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .envs(env.iter().copied())
            .current_dir(task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command.spawn()?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Ok(Self {
            child,
            stdout,
            stderr,
            spawned_at,
        })
    }

    /// The process id while it runs (for its peak memory in `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Queues `event` and waits, at most `timeout`, for what comes back;
    /// fails at once if the process exits first.
    pub async fn invoke(
        &mut self,
        api: &RuntimeApi,
        event: &Value,
        timeout: Duration,
    ) -> Result<Completion, String> {
        let invocation = api.invoke(event);
        let request_id = invocation.request_id.clone();
        let waited = tokio::time::timeout(timeout, async {
            tokio::select! {
                completion = invocation.completion() => completion,
                status = self.child.wait() => Err(format!(
                    "the function exited ({}) before answering {request_id}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
                )),
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(format!("no answer to {request_id} within {timeout:?}")))
    }

    /// Stops the process (if still running) and returns all it printed.
    pub async fn stop(mut self) -> FunctionOutput {
        // Already exited is fine: kill then reports an error we do not need.
        let _ = self.child.kill().await;
        let stdout = self.stdout.await.unwrap_or_default();
        let stderr = self.stderr.await.unwrap_or_default();
        FunctionOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error ends the capture; what was read is kept.
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        bytes
    })
}

/// The debug build of a workspace binary (`target/debug/NAME`), brought up
/// to date first by `cargo build --workspace --all-targets`: the build that
/// `cargo test --workspace` has just done, so usually nothing to do, and
/// with the same features (a narrower build would compile everything again).
pub fn function_binary(name: &str) -> PathBuf {
    let target = target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(&cargo);
    command
        .args(["build", "--workspace", "--all-targets", "--quiet"])
        .current_dir(crate::template::workspace_root())
        .env("CARGO_TARGET_DIR", target.parent().unwrap_or(&target));
    // What cargo sets for this test process only: build scripts that watch
    // these (ring watches CARGO_MANIFEST_DIR) would otherwise run again, and
    // everything above them would be compiled again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo} build: {e}"));
    assert!(
        status.success(),
        "cargo build --workspace --all-targets failed"
    );
    let binary = target.join(name);
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}

/// `target/debug`: where this test binary (in `target/debug/deps`) lives.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
}
