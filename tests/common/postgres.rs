//! PostgreSQL for the tests: the server FLYTE_NOTIFY_TEST_POSTGRES names (by default
//! postgres://postgres@127.0.0.1:5432/postgres, trust auth), a database of its own per test
//! (created here, dropped with it, so tests run in parallel), and a proxy that can cut a replica
//! off from it without touching the server other tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub fn postgres_server() -> url::Url {
    let dsn = std::env::var("FLYTE_NOTIFY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url::Url::parse(&dsn).expect("FLYTE_NOTIFY_TEST_POSTGRES is a postgres:// URL")
}

/// A database created for one test and dropped with it.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "flyte_notify_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = PgConnection::connect(postgres_server().as_str())
            .await
            .expect("a PostgreSQL server for the tests (FLYTE_NOTIFY_TEST_POSTGRES)");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        Self { name }
    }

    pub fn dsn(&self) -> String {
        let mut url = postgres_server();
        url.set_path(&self.name);
        url.to_string()
    }

    /// The same database through another host and port (a proxy).
    pub fn dsn_via(&self, port: u16) -> String {
        let mut url = postgres_server();
        url.set_path(&self.name);
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(port)).unwrap();
        url.to_string()
    }

    /// A plain connection of the test's own, to look at or disturb the database.
    pub async fn session(&self) -> PgConnection {
        PgConnection::connect(&self.dsn()).await.unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs on the test's runtime, which cannot wait for itself: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(postgres_server().as_str()).await {
                    // FORCE: a ledger the test left open (a replica) still has connections.
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A TCP proxy in front of the test server that can cut the network: while cut, every connection
/// through it stays open but nothing passes (as with a partition or a host that died), so only a
/// timeout ends a call; the server sees its sessions end. Restored, it passes traffic again, and
/// the connections it held through the cut are closed. Runs on the test's runtime: the processes
/// behind it (replicas) connect to `port`.
pub struct Proxy {
    pub port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start() -> Self {
        let server = postgres_server();
        let upstream: SocketAddr = tokio::net::lookup_host((
            server.host_str().unwrap_or("127.0.0.1"),
            server.port().unwrap_or(5432),
        ))
        .await
        .unwrap()
        .next()
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(tokio::sync::watch::channel(false).0);
        let switch = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut cut = switch.subscribe();
                tokio::spawn(async move {
                    if !*cut.borrow() {
                        let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let was_cut = tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                            _ = cut.wait_for(|cut| *cut) => true,
                        };
                        if !was_cut {
                            return;
                        }
                    }
                    // Cut: the server's side goes, the client's is held, silent, until restored.
                    let _ = cut.wait_for(|cut| !*cut).await;
                    drop(client);
                });
            }
        });
        Self { port, cut, task }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.restore();
    }
}
