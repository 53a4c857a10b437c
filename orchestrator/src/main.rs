//! The `liveclass` binary: parses the command line, loads configuration, sets up logging and runs
//! the chosen subcommand.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use orchestrator::{
    clock::SystemClock,
    config::{Config, LogFormat, Secret},
    db::Db,
    seed,
    server::Server,
};

/// Live-lesson and class orchestration server.
///
/// Configuration comes from built-in defaults, then the TOML file (`--config`, or `liveclass.toml` if
/// present), then `LIVECLASS_*` environment variables (`DATABASE_URL` too; `<NAME>_FILE` reads a
/// secret from a file), then these flags.
#[derive(Parser)]
#[command(name = "liveclass", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "LIVECLASS_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: `sqlite://liveclass.db` (default) or `postgres://user@host/db`.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve {
        /// Listen address [default: 127.0.0.1:8080; env: LIVECLASS_ADDR].
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Run database migrations and exit.
    Migrate,
    /// Create (or reuse) a demo tenant with an admin, a tutor, two students (one a minor) and a parent,
    /// and print their ids and fresh tokens.
    SeedDemo {
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(url) = cli.database_url {
        config.database_url = Secret::new(url);
    }
    let command = cli.command.unwrap_or(Command::Serve { addr: None });
    if let Command::Serve { addr: Some(addr) } = &command {
        config.addr = *addr;
    }
    init_logging(&config);
    match command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let db = Db::connect(config.database_url.expose(), 1).await?;
            db.migrate().await?;
            db.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::SeedDemo { json } => {
            // Seeding serves no media: the running server may hold the SFU's UDP port.
            config.embedded_sfu = false;
            let server = Server::build(config, Arc::new(SystemClock)).await?;
            let demo = seed::seed(server.state()).await?;
            server.state().db.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&demo)?);
            } else {
                println!("tenant {} ({}); every password is {:?}", demo.tenant_slug, demo.tenant_id, demo.password);
                for u in [&demo.admin, &demo.tutor, &demo.student, &demo.minor, &demo.parent] {
                    println!(
                        "{:<8} {:<32} {}\n         access token: {}",
                        u.role.as_str(),
                        u.email,
                        u.id,
                        u.access_token
                    );
                }
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    tracing::info!(config = %config.redacted(), "starting liveclass");
    let addr = config.addr;
    let server = Server::build(config, Arc::new(SystemClock)).await?;
    let listener = orchestrator::server::bind(addr).with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    server.run(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
