//! The bare group-commit insert: the ceiling the ledger's Enqueue is measured against.
//!
//! `flyte-notify bench-bare` (hidden) serves `flytenotify.v1.NotificationService/Enqueue` over the
//! same tonic stack as the real server and does nothing with a request but insert it, as one row
//! (its request_id and its encoded bytes), into one table of the same store, durably, sharing
//! commits between the calls waiting: on SQLite one writer thread commits whatever is queued (as
//! the ledger's writer does); on PostgreSQL a few writers each insert whatever is queued with one
//! multi-row statement, so that commits overlap and share the WAL's flushes. No validation, no
//! matching, no deliveries, no commit-order lock: what is left is the price of the transport and
//! of a durable commit, and `Enqueue / bare` says how much the ledger adds to it. The bench starts
//! it as a child process, as it starts the server, so both are measured the same way in one run.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures::future::BoxFuture;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::proto::flytenotify::v1::{EnqueueRequest, EnqueueResponse};

/// The most rows one commit takes, as the ledgers' writers.
const MAX_BATCH: usize = 1024;

/// PostgreSQL writers: enough that one batch's commit overlaps the next batch's insert.
const PG_WRITERS: usize = 4;

const TABLE: &str = "flyte_notify_bench_bare";

#[derive(Debug, Clone, clap::Args)]
pub struct BareArgs {
    /// Where the row goes: a SQLite file under --data-dir, or PostgreSQL at --postgres.
    #[arg(long, value_parser = ["sqlite", "postgres"])]
    pub store: String,
    #[arg(long, default_value = "flyte-notify-bare")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

struct Row {
    request_id: String,
    body: Vec<u8>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Serves Enqueue as a bare insert until killed; logs "listening on ADDR" as the server does.
pub async fn serve(args: BareArgs) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Row>(4 * MAX_BATCH);
    match args.store.as_str() {
        "sqlite" => {
            std::fs::create_dir_all(&args.data_dir)?;
            let conn = rusqlite::Connection::open(args.data_dir.join("bare.sqlite"))?;
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.execute_batch(&format!(
                "PRAGMA synchronous = FULL; \
                 CREATE TABLE IF NOT EXISTS {TABLE} (request_id TEXT PRIMARY KEY, body BLOB NOT NULL)"
            ))?;
            std::thread::Builder::new()
                .name("bare-sqlite-writer".into())
                .spawn(move || sqlite_writer(conn, rx))?;
        }
        _ => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(PG_WRITERS as u32)
                .connect(&args.postgres)
                .await
                .with_context(|| format!("cannot connect to {}", args.postgres))?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (request_id TEXT PRIMARY KEY, body BYTEA NOT NULL)"
            )))
            .execute(&pool)
            .await?;
            let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
            for _ in 0..PG_WRITERS {
                tokio::spawn(pg_writer(pool.clone(), rx.clone()));
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(BareService { rows: tx })
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// Takes the first row waiting and every row queued behind it, up to MAX_BATCH.
fn drain(first: Row, rx: &mut mpsc::Receiver<Row>) -> Vec<Row> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(row) => batch.push(row),
            Err(_) => break,
        }
    }
    batch
}

fn sqlite_writer(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Row>) {
    while let Some(first) = rx.blocking_recv() {
        let batch = drain(first, &mut rx);
        let result = (|| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(&format!(
                    "INSERT INTO {TABLE} (request_id, body) VALUES (?1, ?2)"
                ))?;
                for row in &batch {
                    insert.execute(rusqlite::params![row.request_id, row.body])?;
                }
            }
            tx.commit()
        })()
        .map_err(|e| e.to_string());
        for row in batch {
            let _ = row.done.send(result.clone());
        }
    }
}

async fn pg_writer(
    pool: sqlx::PgPool,
    rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Row>>>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            drain(first, &mut rx)
        };
        let ids: Vec<&str> = batch.iter().map(|r| r.request_id.as_str()).collect();
        let bodies: Vec<&[u8]> = batch.iter().map(|r| r.body.as_slice()).collect();
        // One statement is one transaction: one round trip and one durable commit per batch.
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {TABLE} (request_id, body) SELECT * FROM UNNEST($1::text[], $2::bytea[])"
        )))
        .bind(&ids)
        .bind(&bodies)
        .execute(&pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
        drop((ids, bodies));
        for row in batch {
            let _ = row.done.send(result.clone());
        }
    }
}

/// Enqueue only; anything else is UNIMPLEMENTED.
#[derive(Clone)]
struct BareService {
    rows: mpsc::Sender<Row>,
}

impl tonic::server::NamedService for BareService {
    const NAME: &'static str = "flytenotify.v1.NotificationService";
}

impl tower::Service<http::Request<tonic::body::Body>> for BareService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let insert = Insert {
            rows: self.rows.clone(),
        };
        Box::pin(async move {
            if request.uri().path() != "/flytenotify.v1.NotificationService/Enqueue" {
                return Ok(
                    tonic::Status::unimplemented("the bare baseline serves Enqueue only")
                        .into_http(),
                );
            }
            let codec = tonic_prost::ProstCodec::<EnqueueResponse, EnqueueRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(insert, request).await)
        })
    }
}

struct Insert {
    rows: mpsc::Sender<Row>,
}

impl tonic::server::UnaryService<EnqueueRequest> for Insert {
    type Response = EnqueueResponse;
    type Future = Pin<
        Box<dyn Future<Output = Result<tonic::Response<EnqueueResponse>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<EnqueueRequest>) -> Self::Future {
        let rows = self.rows.clone();
        Box::pin(async move {
            let request = request.into_inner();
            let (done, inserted) = oneshot::channel();
            let request_id = request.request_id.clone();
            rows.send(Row {
                request_id: request_id.clone(),
                body: request.encode_to_vec(),
                done,
            })
            .await
            .map_err(|_| tonic::Status::unavailable("the writer stopped"))?;
            inserted
                .await
                .map_err(|_| tonic::Status::unavailable("the writer stopped"))?
                .map_err(tonic::Status::internal)?;
            Ok(tonic::Response::new(EnqueueResponse {
                delivery_ids: vec![request_id.clone()],
                request_id,
                ..Default::default()
            }))
        })
    }
}
