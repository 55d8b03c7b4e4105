//! The `tether` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether::config::{Config, DEFAULT_TOML};
use tether::runtime::Runtime;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Thread-per-core UDP SIP edge relay: keeps NATed endpoints reachable and wakes them on demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge relay (embedded defaults when no --config is given).
    Run {
        /// TOML configuration file; see `tether config` for every key.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Override sip.listen (repeatable), e.g. --listen 127.0.0.1:5060.
        #[arg(short, long)]
        listen: Vec<std::net::SocketAddr>,
        /// Override runtime.workers (0 = one per core).
        #[arg(short, long)]
        workers: Option<usize>,
    },
    /// Print the embedded default configuration.
    Config,
    /// Check a configuration file and exit.
    Check { config: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{DEFAULT_TOML}");
            ExitCode::SUCCESS
        }
        Command::Check { config } => match Config::load(Some(&config)) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            listen,
            workers,
        } => {
            let mut cfg = match Config::load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if !listen.is_empty() {
                cfg.sip.listen = listen;
            }
            if let Some(w) = workers {
                cfg.runtime.workers = w;
            }
            match run(&cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tether: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(cfg: &Config) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // Register before starting workers so an early signal is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let rt = Runtime::start(cfg)?;
    for addr in &rt.local_addrs {
        // Machine-readable line for scripts and tests that bind port 0.
        println!("listening udp {addr}");
    }
    use std::io::Write as _;
    std::io::stdout().flush()?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    rt.shutdown()?;
    tracing::info!("stopped");
    Ok(())
}
