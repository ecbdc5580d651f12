//! Benchmark of ferry's FTPS client against `curl --ssl-reqd`, on one test-bed vsftpd.
//!
//! Run with `scripts/bench-ftps` (release build). It uploads and downloads one large file
//! (1 GiB by default) and many small files (1000 x 10 KiB) with ferry (one session, hashing
//! every byte) and with curl (one process per direction, reusing its connection), then prints
//! MB/s, files/s, ferry's peak RSS and the ratio ferry/curl. Not part of the test suite:
//! figures move by ~20% between runs on a shared machine, compare the ratios.
//!
//! Options: `--large-mib N` (default 1024), `--small-count N` (default 1000),
//! `--small-kib N` (default 10), `--tls 1.2|1.3` (default 1.2: curl's uploads to vsftpd fail under TLS 1.3), `--sessions N` (parallel
//! sessions for the small files, as the transfer engine's pool does; default 4). The small
//! files are also timed over a single session, to show what one connection gives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_shared::ftps::{Session, SessionConfig, TlsVersion};
use ferry_shared::secrets::Secret;
use ferry_tests::ftp::{FtpServer, FtpServerKind, FtpServerOptions};
use tokio::io::AsyncWriteExt;

struct Args {
    large_mib: u64,
    small_count: usize,
    small_kib: usize,
    tls: TlsVersion,
    sessions: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        large_mib: 1024,
        small_count: 1000,
        small_kib: 10,
        tls: TlsVersion::Tls12,
        sessions: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--large-mib" => a.large_mib = value.parse()?,
            "--small-count" => a.small_count = value.parse()?,
            "--small-kib" => a.small_kib = value.parse()?,
            "--tls" => a.tls = value.parse()?,
            "--sessions" => a.sessions = value.parse::<usize>()?.max(1),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

/// Peak resident set size of this process, in MiB (from /proc).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn write_pattern(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    let mut chunk = vec![0u8; 1024 * 1024];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(7);
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).await?;
        left -= n as u64;
        chunk.rotate_left(3);
    }
    f.flush().await?;
    Ok(())
}

/// Runs curl; returns how many of its transfers failed (curl keeps going after a failure).
fn curl(server: &FtpServer, ca: &Path, extra: &[String]) -> anyhow::Result<usize> {
    let out = Command::new("curl")
        // curl's fastest settings for many files: no CWD per file, no SIZE before RETR.
        .args([
            "-sS",
            "--ssl-reqd",
            "--ftp-method",
            "nocwd",
            "--ignore-content-length",
        ])
        .arg("--cacert")
        .arg(ca)
        .args([
            "--user",
            &format!("{}:{}", server.username, server.password),
        ])
        .args(extra)
        .output()
        .context("running curl")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failures = stderr.lines().filter(|l| l.starts_with("curl: (")).count();
    if let Some(first) = stderr.lines().next() {
        eprintln!("curl reported {failures} failed transfer(s), first: {first}");
    }
    Ok(failures)
}

fn url(server: &FtpServer, path: &str) -> String {
    format!("ftp://{}:{}/{path}", server.host, server.port)
}

struct Figures {
    large_up: f64,
    large_down: f64,
    small_up: f64,
    small_down: f64,
}

/// Uploads (or, with `down`, downloads back) `files` over one session.
async fn small_batch(
    cfg: &SessionConfig,
    files: &[PathBuf],
    remote_dir: &str,
    down: Option<&Path>,
) -> anyhow::Result<()> {
    let mut s = Session::connect(cfg).await?;
    for p in files {
        let name = p.file_name().and_then(|n| n.to_str()).context("name")?;
        match down {
            None => {
                s.upload(p, remote_dir, name, None).await?;
            }
            Some(dir) => {
                s.download(remote_dir, name, dir).await?;
            }
        }
    }
    s.quit().await;
    Ok(())
}

/// One session per chunk, all at once (the pool of the transfer engine does the same).
async fn parallel(
    cfg: &SessionConfig,
    chunks: &[Vec<PathBuf>],
    down: Option<&Path>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let cfg = cfg.clone();
        let chunk = chunk.clone();
        let down = down.map(Path::to_path_buf);
        tasks.spawn(async move { small_batch(&cfg, &chunk, "/ferry", down.as_deref()).await });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let server = FtpServer::start(FtpServerOptions::new(FtpServerKind::Vsftpd)).await?;
    let work = tempfile::tempdir()?;
    let large = work.path().join("large.bin");
    let large_bytes = a.large_mib * 1024 * 1024;
    write_pattern(&large, large_bytes).await?;
    let small_dir = work.path().join("small");
    std::fs::create_dir(&small_dir)?;
    let small: Vec<PathBuf> = (0..a.small_count)
        .map(|i| small_dir.join(format!("s{i:05}.dat")))
        .collect();
    for p in &small {
        write_pattern(p, a.small_kib as u64 * 1024).await?;
    }
    let small_bytes = (a.small_count * a.small_kib * 1024) as f64;
    server.create_dir("ferry")?;
    server.create_dir("ferry1")?;
    server.create_dir("curl")?;
    let down = work.path().join("down");
    std::fs::create_dir(&down)?;
    let mb = |bytes: f64, secs: f64| bytes / 1e6 / secs;
    let rss_before = peak_rss_mib();

    // ---- ferry: one session for everything, SHA-256 of every byte.
    let mut cfg = SessionConfig::new(server.host.clone(), server.port, server.username.clone());
    cfg.password = Some(Secret::new(server.password.clone()));
    cfg.tls.ca_cert_pem = Some(server.pki.ca_cert_pem.clone());
    cfg.tls.max_version = a.tls;
    let mut s = Session::connect(&cfg).await?;
    let t = Instant::now();
    s.upload(&large, "/ferry", "large.bin", None).await?;
    let ferry_large_up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let d = s.download("/ferry", "large.bin", &down).await?;
    let ferry_large_down = t.elapsed().as_secs_f64();
    drop(d);
    // Small files over one session, then over `sessions` parallel sessions.
    let t = Instant::now();
    small_batch(&cfg, &small, "/ferry1", None).await?;
    let one_small_up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    small_batch(&cfg, &small, "/ferry1", Some(&down)).await?;
    let one_small_down = t.elapsed().as_secs_f64();
    let chunks: Vec<Vec<PathBuf>> = small
        .chunks(small.len().div_ceil(a.sessions).max(1))
        .map(|c| c.to_vec())
        .collect();
    let t = Instant::now();
    parallel(&cfg, &chunks, None).await?;
    let ferry_small_up = t.elapsed().as_secs_f64();
    let t = Instant::now();
    parallel(&cfg, &chunks, Some(&down)).await?;
    let ferry_small_down = t.elapsed().as_secs_f64();
    let stats = s.data_tls_stats();
    s.quit().await;
    let rss = peak_rss_mib();
    let ferry = Figures {
        large_up: mb(large_bytes as f64, ferry_large_up),
        large_down: mb(large_bytes as f64, ferry_large_down),
        small_up: a.small_count as f64 / ferry_small_up,
        small_down: a.small_count as f64 / ferry_small_down,
    };

    // ---- curl: one process per direction, connection reused across the small files.
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &server.pki.ca_cert_pem)?;
    let tls_flag = match a.tls {
        TlsVersion::Tls12 => "--tls-max",
        TlsVersion::Tls13 => "--tlsv1.2",
    };
    let mut tls_args = vec![tls_flag.to_string()];
    if a.tls == TlsVersion::Tls12 {
        tls_args.push("1.2".into());
    }
    let mut curl_failures = 0usize;
    let t = Instant::now();
    curl_failures += curl(
        &server,
        &ca,
        &[
            tls_args.clone(),
            vec![
                "-T".into(),
                large.display().to_string(),
                url(&server, "curl/large.bin"),
            ],
        ]
        .concat(),
    )?;
    let curl_large_up = t.elapsed().as_secs_f64();
    let out = down.join("curl-large.bin");
    let t = Instant::now();
    curl_failures += curl(
        &server,
        &ca,
        &[
            tls_args.clone(),
            vec![
                url(&server, "curl/large.bin"),
                "-o".into(),
                out.display().to_string(),
            ],
        ]
        .concat(),
    )?;
    let curl_large_down = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(out);

    let up_cfg = work.path().join("up.curlrc");
    let mut text = String::new();
    for p in &small {
        let name = p.file_name().and_then(|n| n.to_str()).context("name")?;
        text.push_str(&format!(
            "upload-file = \"{}\"\nurl = \"{}\"\n",
            p.display(),
            url(&server, &format!("curl/{name}"))
        ));
    }
    std::fs::write(&up_cfg, text)?;
    let t = Instant::now();
    curl_failures += curl(
        &server,
        &ca,
        &[
            tls_args.clone(),
            vec!["--config".into(), up_cfg.display().to_string()],
        ]
        .concat(),
    )?;
    let curl_small_up = t.elapsed().as_secs_f64();

    let down_cfg = work.path().join("down.curlrc");
    let mut text = String::new();
    for p in &small {
        let name = p.file_name().and_then(|n| n.to_str()).context("name")?;
        text.push_str(&format!(
            "url = \"{}\"\noutput = \"{}\"\n",
            url(&server, &format!("curl/{name}")),
            down.join(format!("c-{name}")).display()
        ));
    }
    std::fs::write(&down_cfg, text)?;
    let t = Instant::now();
    curl_failures += curl(
        &server,
        &ca,
        &[
            tls_args,
            vec!["--config".into(), down_cfg.display().to_string()],
        ]
        .concat(),
    )?;
    let curl_small_down = t.elapsed().as_secs_f64();
    let curl = Figures {
        large_up: mb(large_bytes as f64, curl_large_up),
        large_down: mb(large_bytes as f64, curl_large_down),
        small_up: a.small_count as f64 / curl_small_up,
        small_down: a.small_count as f64 / curl_small_down,
    };

    println!(
        "vsftpd on loopback, TLS max {}, {} MiB large file, {} x {} KiB small files ({:.1} MB)",
        a.tls,
        a.large_mib,
        a.small_count,
        a.small_kib,
        small_bytes / 1e6
    );
    println!(
        "{:<22} {:>12} {:>12} {:>10}",
        "", "ferry", "curl", "ferry/curl"
    );
    let row = |what: &str, f: f64, c: f64, unit: &str| {
        println!(
            "{what:<22} {f:>8.1} {unit:<3} {c:>8.1} {unit:<3} {:>10.2}",
            f / c
        );
    };
    row("large upload", ferry.large_up, curl.large_up, "MB/s");
    row("large download", ferry.large_down, curl.large_down, "MB/s");
    row(
        "small uploads, 1 sess.",
        a.small_count as f64 / one_small_up,
        curl.small_up,
        "f/s",
    );
    row(
        "small downloads, 1 sess.",
        a.small_count as f64 / one_small_down,
        curl.small_down,
        "f/s",
    );
    let label_up = format!("small uploads, {} sess.", a.sessions);
    let label_down = format!("small downloads, {} sess.", a.sessions);
    row(&label_up, ferry.small_up, curl.small_up, "f/s");
    row(&label_down, ferry.small_down, curl.small_down, "f/s");
    if curl_failures > 0 {
        println!("curl: {curl_failures} transfer(s) failed (its figures include them)");
    }
    println!(
        "ferry peak RSS: {rss:.1} MiB (before the transfers: {rss_before:.1} MiB); data connections resumed: {} of {}",
        stats.resumed,
        stats.resumed + stats.full
    );
    Ok(())
}
