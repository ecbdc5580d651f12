//! `ferry-worker audit`: a flow's (or one file's) history from the audit trail, `audit
//! verify` to check its hash chain, `audit export` to write it as JSON Lines for long-term
//! storage. The trail itself is `ferry_shared::audit`.
//!
//! Exit codes: 0 success (for `verify`: the chain is intact), 1 `verify` found a broken
//! record (named on stdout), 2 configuration or usage error, 3 the trail could not be read
//! (Redis unreachable, the HMAC key unresolvable, the output not writable).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ferry_shared::audit::{
    self, AuditError, AuditStore, ChainKey, ExportedRecord, Filter, Verdict,
};
use ferry_shared::config::Config;
use ferry_shared::idempotency::{Store, StoreConfig};
use ferry_shared::secrets::Resolver;

/// Exit code: the trail could not be read.
const EXIT_UNREADABLE: u8 = 3;

/// `audit [verify | export]` and their options.
#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    action: Option<AuditAction>,
    /// The flow whose trail to read.
    #[arg(long, global = true)]
    flow: Option<String>,
    /// Only this file's records (its name relative to the flow's directory).
    #[arg(long)]
    file: Option<String>,
    /// Only records at or after this time: RFC 3339 (`2026-12-04T07:00:00Z`) or an age
    /// (`30m`, `2h`, `7d`).
    #[arg(long, global = true)]
    since: Option<String>,
    /// Print one JSON array of records instead of one line per record.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the flow's hash chain; name the first broken record (exit 1) or print how many
    /// records verified (exit 0).
    Verify,
    /// Write the flow's records as JSON Lines (one object per record).
    Export {
        /// The file to write (stdout when absent).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// Runs `audit` and returns its exit code.
pub async fn run(config: &Config, args: AuditArgs) -> ExitCode {
    let Some(flow) = args.flow.clone() else {
        eprintln!("ferry-worker audit: --flow is required");
        return ExitCode::from(ferry_shared::startup::EXIT_CONFIG);
    };
    let since = match &args.since {
        None => None,
        Some(text) => match audit::parse_since(text, chrono_now()) {
            Ok(since) => Some(since),
            Err(reason) => {
                eprintln!("ferry-worker audit: --since {reason}");
                return ExitCode::from(ferry_shared::startup::EXIT_CONFIG);
            }
        },
    };
    let resolver = Resolver::new(config.settings.resolver.clone());
    let store = match connect(config, &resolver).await {
        Ok(store) => AuditStore::new(&store),
        Err(reason) => return unreadable(&reason),
    };
    let filter = Filter {
        file: args.file.clone(),
        since,
    };
    let result = match args.action {
        Some(AuditAction::Verify) => return verify(config, &resolver, &store, &flow).await,
        Some(AuditAction::Export { output }) => export(&store, &flow, &filter, output).await,
        None => history(&store, &flow, &filter, args.json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => unreadable(&error.to_string()),
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn unreadable(reason: &str) -> ExitCode {
    eprintln!("ferry-worker audit: {reason}");
    ExitCode::from(EXIT_UNREADABLE)
}

async fn connect(config: &Config, resolver: &Resolver) -> Result<Store, String> {
    let store_config = StoreConfig::from_config(config, resolver)
        .await
        .map_err(|e| format!("redis.password: {e}"))?;
    Store::connect(&store_config)
        .await
        .map_err(|e| e.to_string())
}

/// The records, one line each (or one JSON array), oldest first.
async fn history(
    store: &AuditStore,
    flow: &str,
    filter: &Filter,
    json: bool,
) -> Result<(), AuditError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        out.write_all(b"[")?;
    }
    let mut first = true;
    let count = audit::read(store, flow, filter, |record: ExportedRecord| {
        if json {
            if !first {
                out.write_all(b",")?;
            }
            serde_json::to_writer(&mut out, &record).map_err(std::io::Error::other)?;
        } else {
            writeln!(out, "{}", record.human_line())?;
        }
        first = false;
        Ok(())
    })
    .await?;
    if json {
        out.write_all(b"]\n")?;
    } else if count == 0 {
        writeln!(out, "no audit records for flow {flow} with these filters")?;
    }
    out.flush()?;
    Ok(())
}

/// JSON Lines to `output` (or stdout); the count on stderr.
async fn export(
    store: &AuditStore,
    flow: &str,
    filter: &Filter,
    output: Option<PathBuf>,
) -> Result<(), AuditError> {
    let sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(sink);
    let count = audit::read(store, flow, filter, |record| {
        serde_json::to_writer(&mut out, &record).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        Ok(())
    })
    .await?;
    out.flush()?;
    let to = output.map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    eprintln!("exported {count} audit records of flow {flow} to {to}");
    Ok(())
}

/// Exit 0 with the count when intact, 1 naming the first broken record.
async fn verify(config: &Config, resolver: &Resolver, store: &AuditStore, flow: &str) -> ExitCode {
    let key = match &config.settings.audit.hmac_key {
        None => None,
        Some(reference) => match resolver.resolve(reference).await {
            Ok(secret) => Some(ChainKey::new(secret)),
            Err(error) => return unreadable(&format!("audit.hmac_key: {error}")),
        },
    };
    match audit::verify(store, flow, key.as_ref()).await {
        Ok(Verdict::Intact {
            count,
            first_seq,
            last_seq,
            hmac_checked,
        }) => {
            let hmac = if hmac_checked {
                "hash chain and HMACs"
            } else {
                "hash chain (no audit.hmac_key: HMACs not checked)"
            };
            let range = if count == 0 {
                String::new()
            } else {
                format!(" (#{first_seq} to #{last_seq})")
            };
            println!("audit trail of flow {flow}: intact, {count} records verified{range}; {hmac}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Broken(broken)) => {
            println!(
                "audit trail of flow {flow}: BROKEN at {broken}; {} records before it verified",
                broken.verified_before
            );
            ExitCode::FAILURE
        }
        Err(error) => unreadable(&error.to_string()),
    }
}
