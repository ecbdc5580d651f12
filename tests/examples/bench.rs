//! End-to-end benchmark of ferry's flows against curl, lftp and rclone on one test-bed vsftpd.
//!
//! Run with `scripts/bench` (release build). ferry is measured as it runs in production:
//! `ferry-worker run --flow f --json` of an upload or download flow, with its Redis claims and
//! delivery records (a private key prefix, emptied before every run), temporary names,
//! SHA-256 of every byte and `fsync`. The peers on the same server: curl (one process,
//! connection reused), lftp (`mirror`, 4 parallel) and rclone (`copy`, 4 transfers). The
//! server is vsftpd capped to TLS 1.2, on loopback; every figure is a whole process's wall
//! time (start-up and login included).
//!
//! Cases: one large file up and down, many small files up and down. Runs are interleaved
//! (run 1 of every tool, then run 2 ...; the order of the tools rotates) and the table shows
//! medians. Also printed: ferry's peak RSS (`/usr/bin/time`) and the FTP commands per file
//! each tool sent (counted in vsftpd's protocol log), the round trips of the control
//! connection. Not part of the test suite: speed is never asserted.
//!
//! Options: `--large-mib N` (default 1024), `--small-count N` (default 1000), `--small-kib N`
//! (default 10), `--runs N` (default 3), `--tools ferry,curl,lftp,rclone` and
//! `--cases large-up,large-down,small-up,small-down` (subsets, to profile one case).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use ferry_tests::bed::{Bed, FlowSpec};
use ferry_tests::ftp::{FtpServerKind, FtpServerOptions, TlsCap};
use ferry_tests::keyspace::delete_prefix;

struct Args {
    large_mib: u64,
    small_count: usize,
    small_kib: usize,
    runs: usize,
    tools: Vec<Tool>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Ferry,
    Curl,
    Lftp,
    Rclone,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ferry => "ferry",
            Tool::Curl => "curl",
            Tool::Lftp => "lftp",
            Tool::Rclone => "rclone",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Case {
    LargeUp,
    LargeDown,
    SmallUp,
    SmallDown,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::LargeUp,
        Case::LargeDown,
        Case::SmallUp,
        Case::SmallDown,
    ];

    fn upload(self) -> bool {
        matches!(self, Case::LargeUp | Case::SmallUp)
    }

    fn large(self) -> bool {
        matches!(self, Case::LargeUp | Case::LargeDown)
    }
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        large_mib: 1024,
        small_count: 1000,
        small_kib: 10,
        runs: 3,
        tools: vec![Tool::Ferry, Tool::Curl, Tool::Lftp, Tool::Rclone],
        cases: Case::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--large-mib" => a.large_mib = value.parse()?,
            "--small-count" => a.small_count = value.parse()?,
            "--small-kib" => a.small_kib = value.parse()?,
            "--runs" => a.runs = value.parse::<usize>()?.max(1),
            "--tools" => {
                a.tools = value
                    .split(',')
                    .map(|t| match t {
                        "ferry" => Ok(Tool::Ferry),
                        "curl" => Ok(Tool::Curl),
                        "lftp" => Ok(Tool::Lftp),
                        "rclone" => Ok(Tool::Rclone),
                        other => bail!("unknown tool {other}"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--cases" => {
                a.cases = value
                    .split(',')
                    .map(|c| match c {
                        "large-up" => Ok(Case::LargeUp),
                        "large-down" => Ok(Case::LargeDown),
                        "small-up" => Ok(Case::SmallUp),
                        "small-down" => Ok(Case::SmallDown),
                        other => bail!("unknown case {other}"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => bail!("unknown option {other}"),
        }
    }
    Ok(a)
}

fn write_pattern(path: &Path, len: u64, seed: u8) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut chunk = vec![0u8; 1024 * 1024];
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(seed);
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
        chunk.rotate_left(3);
    }
    f.flush()?;
    Ok(())
}

/// Empties `dir` (creating it if needed).
fn reset_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Hard-links every file of `from` into `to` (no copy of the data).
fn link_all(from: &Path, to: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::hard_link(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .count()
        })
        .unwrap_or(0)
}

/// FTP commands in vsftpd's protocol log so far.
fn commands_logged(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.matches("FTP command: ").count())
        .unwrap_or(0)
}

/// Runs `cmd` with its output to files in `logs`; fails unless it exits 0.
fn run(mut cmd: Command, logs: &Path, label: &str) -> anyhow::Result<()> {
    let out = std::fs::File::create(logs.join(format!("{label}.out")))?;
    let err = std::fs::File::create(logs.join(format!("{label}.err")))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("starting {label}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(logs.join(format!("{label}.err"))).unwrap_or_default();
        bail!(
            "{label} failed ({status}): {}",
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(())
}

/// What every tool needs to know.
struct World {
    bed: Bed,
    bin_dir: PathBuf,
    work: PathBuf,
    ca: PathBuf,
    rclone_pass: String,
    vsftpd_log: PathBuf,
}

impl World {
    fn source(&self, case: Case) -> PathBuf {
        self.work.join(if case.large() {
            "src-large"
        } else {
            "src-small"
        })
    }

    /// The server folder a download reads (populated once).
    fn remote_source(case: Case) -> &'static str {
        if case.large() {
            "out-large"
        } else {
            "out-small"
        }
    }

    /// Where `tool`'s upload goes (emptied before each run) or its download lands.
    fn dest(&self, tool: Tool, case: Case) -> PathBuf {
        if case.upload() {
            self.bed.server.path(&format!("up-{}", tool.name()))
        } else if tool == Tool::Ferry {
            self.bed.local()
        } else {
            self.work.join(format!("down-{}", tool.name()))
        }
    }

    fn url(&self, path: &str) -> String {
        let s = &self.bed.server;
        format!("ftp://{}:{}/{path}", s.host, s.port)
    }

    /// Prepares a run of `tool` on `case`, then the command that does it.
    fn command(&self, tool: Tool, case: Case) -> anyhow::Result<Command> {
        let dest = self.dest(tool, case);
        reset_dir(&dest)?;
        if case.upload() {
            let owner = self.bed.server.root.metadata()?;
            use std::os::unix::fs::MetadataExt;
            std::os::unix::fs::chown(&dest, Some(owner.uid()), Some(owner.gid()))?;
        }
        let src = self.source(case);
        let remote_src = Self::remote_source(case);
        let up_dir = format!("up-{}", tool.name());
        let s = &self.bed.server;
        Ok(match tool {
            Tool::Ferry => {
                let local = self.bed.local();
                let remote = if case.upload() {
                    format!("/{up_dir}")
                } else {
                    format!("/{remote_src}")
                };
                if case.upload() {
                    reset_dir(&local)?;
                    link_all(&src, &local)?;
                }
                let flow = FlowSpec {
                    direction: if case.upload() { "upload" } else { "download" },
                    remote: &remote,
                    extra: "",
                };
                self.bed.config(&flow, None);
                delete_prefix(&self.bed.prefix.0);
                let mut cmd = Command::new("/usr/bin/time");
                cmd.args(["-f", "%M", "-o"])
                    .arg(self.work.join("ferry-rss"))
                    .arg(self.bin_dir.join("ferry-worker"))
                    .arg("--config")
                    .arg(self.bed.dir.path())
                    .args(["run", "--flow", "f", "--json"]);
                cmd
            }
            Tool::Curl => {
                let mut cmd = Command::new("curl");
                cmd.args([
                    "-sS",
                    "--ssl-reqd",
                    "--tls-max",
                    "1.2",
                    "--ftp-method",
                    "nocwd",
                ])
                .args(["--ignore-content-length", "--cacert"])
                .arg(&self.ca)
                .args(["--user", &format!("{}:{}", s.username, s.password)]);
                let mut rc = String::new();
                for e in std::fs::read_dir(if case.upload() {
                    src.clone()
                } else {
                    self.source(case)
                })? {
                    let name = e?.file_name().to_string_lossy().into_owned();
                    if case.upload() {
                        rc.push_str(&format!(
                            "upload-file = \"{}\"\nurl = \"{}\"\n",
                            src.join(&name).display(),
                            self.url(&format!("{up_dir}/{name}"))
                        ));
                    } else {
                        rc.push_str(&format!(
                            "url = \"{}\"\noutput = \"{}\"\n",
                            self.url(&format!("{remote_src}/{name}")),
                            dest.join(&name).display()
                        ));
                    }
                }
                let rc_path = self.work.join("curl.rc");
                std::fs::write(&rc_path, rc)?;
                cmd.arg("--config").arg(rc_path);
                cmd
            }
            Tool::Lftp => {
                let mirror = if case.upload() {
                    format!("mirror -R --parallel=4 {} /{up_dir}", src.display())
                } else {
                    format!("mirror --parallel=4 /{remote_src} {}", dest.display())
                };
                let script = format!(
                    "set ftp:ssl-force true; set ftp:ssl-protect-data true; \
                     set ssl:ca-file {}; set ssl:priority NORMAL:-VERS-TLS1.3; \
                     set net:max-retries 1; set cmd:fail-exit true; \
                     open -u {},{} -p {} {}; {mirror}",
                    self.ca.display(),
                    s.username,
                    s.password,
                    s.port,
                    s.host
                );
                let mut cmd = Command::new("lftp");
                cmd.arg("-c").arg(script);
                cmd
            }
            Tool::Rclone => {
                let remote = |dir: &str| {
                    format!(
                        ":ftp,host={},port={},user={},pass={},explicit_tls=true,\
                         no_check_certificate=true:/{dir}",
                        s.host, s.port, s.username, self.rclone_pass
                    )
                };
                let mut cmd = Command::new("rclone");
                cmd.env("RCLONE_CONFIG", "/dev/null").args([
                    "copy",
                    "--transfers",
                    "4",
                    "--checkers",
                    "4",
                ]);
                if case.upload() {
                    cmd.arg(&src).arg(remote(&up_dir));
                } else {
                    cmd.arg(remote(remote_src)).arg(&dest);
                }
                cmd
            }
        })
    }
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    commands: usize,
    rss_kib: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let bin_dir = ferry_tests::tools::workspace_binary_dir()?;
    if a.tools.contains(&Tool::Ferry) {
        ferry_tests::tools::workspace_binary("ferry-worker")?;
    }
    let mut opts = FtpServerOptions::new(FtpServerKind::Vsftpd);
    opts.tls_cap = TlsCap::Max12;
    let bed = Bed::start_with("bench", opts).await;
    let work = bed.dir.path().join("bench");
    std::fs::create_dir_all(work.join("logs"))?;
    let ca = bed.dir.path().join("ca.pem");
    let large_bytes = a.large_mib * 1024 * 1024;
    let small_bytes = a.small_kib as u64 * 1024;
    std::fs::create_dir_all(work.join("src-large"))?;
    std::fs::create_dir_all(work.join("src-small"))?;
    write_pattern(&work.join("src-large/large.xml"), large_bytes, 7)?;
    for i in 0..a.small_count {
        write_pattern(
            &work.join(format!("src-small/s{i:05}.xml")),
            small_bytes,
            i as u8,
        )?;
    }
    for case in [Case::LargeDown, Case::SmallDown] {
        let dir = bed.server.create_dir(World::remote_source(case))?;
        link_all(
            &work.join(if case.large() {
                "src-large"
            } else {
                "src-small"
            }),
            &dir,
        )?;
    }
    let rclone_pass = if a.tools.contains(&Tool::Rclone) {
        let out = Command::new("rclone")
            .args(["obscure", &bed.server.password])
            .output()
            .context("rclone (install it: scripts/setup-test-env)")?;
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        String::new()
    };
    let vsftpd_log = bed
        .server
        .path("")
        .parent()
        .context("server folder")?
        .join("vsftpd.log");
    let world = World {
        bed,
        bin_dir,
        work: work.clone(),
        ca,
        rclone_pass,
        vsftpd_log,
    };

    let mut samples: BTreeMap<(Case, Tool), Vec<Sample>> = BTreeMap::new();
    for r in 0..a.runs {
        for &case in &a.cases {
            let mut order = a.tools.clone();
            let n = order.len();
            order.rotate_left(r % n);
            for tool in order {
                let cmd = world.command(tool, case)?;
                let before = commands_logged(&world.vsftpd_log);
                let label = format!("{}-{case:?}-{r}", tool.name());
                let t = Instant::now();
                let result = run(cmd, &work.join("logs"), &label);
                let secs = t.elapsed().as_secs_f64();
                if let Err(e) = result {
                    eprintln!("{e:#}");
                    continue;
                }
                let files = if case.large() { 1 } else { a.small_count };
                let got = count_files(&world.dest(tool, case));
                if got != files {
                    eprintln!("{label}: {got} of {files} files arrived; run not counted");
                    continue;
                }
                let commands = commands_logged(&world.vsftpd_log).saturating_sub(before);
                let rss_kib = (tool == Tool::Ferry)
                    .then(|| std::fs::read_to_string(work.join("ferry-rss")).ok())
                    .flatten()
                    .and_then(|t| t.trim().lines().last()?.trim().parse().ok());
                eprintln!("{label}: {secs:.2} s, {commands} FTP commands");
                samples.entry((case, tool)).or_default().push(Sample {
                    secs,
                    commands,
                    rss_kib,
                });
            }
        }
    }
    print_table(&a, &samples);
    Ok(())
}

fn print_table(a: &Args, samples: &BTreeMap<(Case, Tool), Vec<Sample>>) {
    println!(
        "vsftpd (TLS 1.2) on loopback; {} MiB large file, {} x {} KiB small files; medians of {} interleaved runs",
        a.large_mib, a.small_count, a.small_kib, a.runs
    );
    let mut header = format!("{:<24}", "case");
    for t in &a.tools {
        header.push_str(&format!(" {:>14}", t.name()));
    }
    header.push_str("  ferry/best peer");
    println!("{header}");
    for &case in &a.cases {
        let (label, unit) = match case {
            Case::LargeUp => (format!("{} MiB upload", a.large_mib), "MB/s"),
            Case::LargeDown => (format!("{} MiB download", a.large_mib), "MB/s"),
            Case::SmallUp => (
                format!("{} x {} KiB up", a.small_count, a.small_kib),
                "files/s",
            ),
            Case::SmallDown => (
                format!("{} x {} KiB down", a.small_count, a.small_kib),
                "files/s",
            ),
        };
        let rate = |tool: Tool| -> Option<f64> {
            let s = samples.get(&(case, tool))?;
            let secs = median(s.iter().map(|s| s.secs).collect());
            Some(if case.large() {
                (a.large_mib * 1024 * 1024) as f64 / 1e6 / secs
            } else {
                a.small_count as f64 / secs
            })
        };
        let mut line = format!("{label:<24}");
        for &t in &a.tools {
            // `*`: some runs failed, the median is of those that did not.
            let short = samples.get(&(case, t)).is_some_and(|s| s.len() < a.runs);
            let mark = if short { "*" } else { " " };
            match rate(t) {
                Some(r) => line.push_str(&format!(" {r:>6.1}{mark}{unit:<7}")),
                None => line.push_str(&format!(" {:>14}", "failed")),
            }
        }
        let best_peer = a
            .tools
            .iter()
            .filter(|t| **t != Tool::Ferry)
            .filter_map(|t| rate(*t))
            .fold(f64::NAN, f64::max);
        if let Some(f) = rate(Tool::Ferry) {
            line.push_str(&format!("  {:.2}", f / best_peer));
        }
        println!("{line}");
    }
    println!("(* = median of the runs that succeeded; the others are in the log above)");
    println!("FTP commands per file (control round trips, from vsftpd's protocol log):");
    for &case in &a.cases {
        let files = if case.large() { 1 } else { a.small_count } as f64;
        let mut line = format!("  {case:<22?}");
        for &t in &a.tools {
            let per = samples
                .get(&(case, t))
                .map(|s| median(s.iter().map(|s| s.commands as f64).collect()) / files);
            match per {
                Some(p) => line.push_str(&format!(" {}={p:.1}", t.name())),
                None => line.push_str(&format!(" {}=-", t.name())),
            }
        }
        println!("{line}");
    }
    let rss: Vec<u64> = samples
        .iter()
        .filter(|((_, t), _)| *t == Tool::Ferry)
        .flat_map(|(_, s)| s.iter().filter_map(|s| s.rss_kib))
        .collect();
    if let (Some(min), Some(max)) = (rss.iter().min(), rss.iter().max()) {
        println!(
            "ferry peak RSS per run: {:.1}-{:.1} MiB",
            *min as f64 / 1024.0,
            *max as f64 / 1024.0
        );
    }
}
