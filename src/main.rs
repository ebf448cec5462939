use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flyte_notify::config::Config;

#[derive(Parser)]
#[command(
    name = "flyte-notify",
    version,
    about = "Reliable delivery of Flyte workflow notifications"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service. With no config it runs on the embedded default: a SQLite ledger and
    /// a Maildir under ./flyte-notify-data.
    Serve {
        /// YAML config: a FlyteAdmin config (its `notifications:` section) plus `flyteNotify:`.
        #[arg(long, env = "FLYTE_NOTIFY_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides flyteNotify.listen. Port 0 picks a free port (the log says which).
        #[arg(long, env = "FLYTE_NOTIFY_LISTEN")]
        listen: Option<SocketAddr>,
        /// Overrides flyteNotify.dataDir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config, secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Put dead deliveries back to pending with a fresh attempt budget (by id, or --filter).
    Redrive(flyte_notify::operator_cli::ActArgs),
    /// Take dead deliveries out of the pending list; they stay in the ledger with their history.
    Discard(flyte_notify::operator_cli::ActArgs),
    /// One delivery, in any state, with its history.
    Show(flyte_notify::operator_cli::ShowArgs),
    /// Send a message marked as a test through a route, a webhook or to email recipients, and
    /// wait for the outcome: checks a route or credentials before a real failure needs them.
    SendTest(flyte_notify::operator_cli::SendTestArgs),
    /// Hold back matching deliveries for a time window: `silence add | list | expire`.
    #[command(subcommand)]
    Silence(flyte_notify::operator_cli::SilenceCommand),
    /// Measure Enqueue against a no-op RPC (gRPC health) on a fresh server.
    Bench(flyte_notify::bench::BenchArgs),
    /// The bench's baseline: Enqueue as a bare group-commit insert (see src/bench/bare.rs).
    #[command(hide = true)]
    BenchBare(flyte_notify::bench::BareArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn load(config: Option<&PathBuf>) -> Result<Config, String> {
    match config {
        Some(path) => {
            Config::load(path).map_err(|e| format!("config file {}: {e}", path.display()))
        }
        None => Ok(Config::default()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(listen) = listen {
                config.flyte_notify.listen = listen;
            }
            if let Some(dir) = data_dir {
                config.flyte_notify.data_dir = dir;
            }
            let listener = match tokio::net::TcpListener::bind(config.flyte_notify.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!(
                        "error: cannot listen on {}: {e}",
                        config.flyte_notify.listen
                    );
                    return ExitCode::from(1);
                }
            };
            match flyte_notify::run(config, listener, flyte_notify::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { config } => match load(Some(&config)) {
            Ok(c) => {
                for w in flyte_notify::notify::template_warnings(&c.notifications.emailer) {
                    eprintln!("warning: {w}");
                }
                for note in c.notes() {
                    eprintln!("note: {note}");
                }
                if let Err(e) = flyte_notify::check_secrets(&c) {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(2);
                }
                print!("{}", c.redacted_yaml());
                eprintln!("config OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Bench(args) => finish(flyte_notify::bench::run(args).await),
        Command::BenchBare(args) => finish(flyte_notify::bench::serve_bare(args).await),
        Command::Redrive(args) => finish(flyte_notify::operator_cli::redrive(args).await),
        Command::Discard(args) => finish(flyte_notify::operator_cli::discard(args).await),
        Command::Show(args) => finish(flyte_notify::operator_cli::show(args).await),
        Command::SendTest(args) => finish(flyte_notify::operator_cli::send_test(args).await),
        Command::Silence(command) => finish(flyte_notify::operator_cli::silence(command).await),
    }
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
