//! Is the process that holds a claim still alive? Answered only for a process on this very
//! host, where the answer is certain; everywhere else the lease alone decides.
//!
//! Every owner token ends with a stamp of the process that wrote it:
//! `@<boot>.<pid namespace>.<pid>.<start time>`, where `<boot>` is the start of the kernel's
//! boot id (`/proc/sys/kernel/random/boot_id`), `<pid namespace>` the inode of
//! `/proc/self/ns/pid`, and `<start time>` the process's start time in clock ticks since boot
//! (field 22 of `/proc/<pid>/stat`). A holder is known dead when the stamp was written under
//! the same boot and in the same pid namespace as ours, and no process with that pid and
//! that start time exists (a process whose start time cannot be read, `/proc` mounted with
//! `hidepid`, counts as alive unless the kernel says the pid is unused). Then its claim can be taken at once instead of after its lease
//! (a `ferry-worker run` rerun after `kill -9`).
//!
//! Why all four parts: containers on one node share the boot id but not the pid namespace
//! (the same pid is another process there), and a pid is reused by the kernel (the start
//! time tells a new process from the old). Any part missing or unreadable: not known dead.

use std::sync::LazyLock;

/// The stamp of a process, as written in owner tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessStamp {
    boot: String,
    pid_ns: u64,
    pid: u32,
    start: u64,
}

/// This process's stamp (`None` where `/proc` does not tell).
static OURS: LazyLock<Option<ProcessStamp>> = LazyLock::new(|| {
    let pid = std::process::id();
    // A `/proc` of another pid namespace (not remounted after `unshare --pid`) would judge
    // other processes by the wrong numbers: then judge none.
    if !proc_is_ours(pid) {
        return None;
    }
    Some(ProcessStamp {
        boot: boot_id()?,
        pid_ns: pid_namespace()?,
        pid,
        start: start_time(pid)?,
    })
});

/// The suffix this process appends to its owner tokens (empty where `/proc` does not tell).
pub(crate) fn token_suffix() -> String {
    match OURS.as_ref() {
        Some(s) => format!("@{}.{}.{}.{}", s.boot, s.pid_ns, s.pid, s.start),
        None => String::new(),
    }
}

/// Whether the process that wrote `token` is known to be dead (see the module docs).
pub(crate) fn holder_is_dead(token: &str) -> bool {
    let (Some(ours), Some(theirs)) = (OURS.as_ref(), parse(token)) else {
        return false;
    };
    if theirs.boot != ours.boot || theirs.pid_ns != ours.pid_ns || theirs.pid == ours.pid {
        return false;
    }
    match start_time(theirs.pid) {
        // The pid now names a younger process: the holder is gone.
        Some(start) => start != theirs.start,
        // Unreadable (`/proc` mounted with `hidepid`) or gone: dead only if the kernel says
        // there is no such process; a process we may not look at is taken for alive.
        None => no_such_process(theirs.pid),
    }
}

/// Whether the kernel says no process has `pid` (`kill(pid, 0)` fails with `ESRCH`).
fn no_such_process(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(rustix::process::test_kill_process(pid), Err(e) if e == rustix::io::Errno::SRCH)
}

fn parse(token: &str) -> Option<ProcessStamp> {
    let (_, stamp) = token.rsplit_once('@')?;
    let mut parts = stamp.split('.');
    let stamp = ProcessStamp {
        boot: parts.next()?.to_owned(),
        pid_ns: parts.next()?.parse().ok()?,
        pid: parts.next()?.parse().ok()?,
        start: parts.next()?.parse().ok()?,
    };
    let well_formed = parts.next().is_none()
        && stamp.boot.len() == 8
        && stamp.boot.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(stamp)
}

/// Whether `/proc/self/stat` names this process by the pid the kernel gave us.
fn proc_is_ours(pid: u32) -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse::<u32>().ok())
        == Some(pid)
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    (hex.len() == 8).then_some(hex)
}

fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// Field 22 of `/proc/<pid>/stat` (after the command name, which may hold spaces and
/// parentheses: parse from the last `)`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    // after_name starts with " S ppid ...": field 3 is its first word; 22 is its 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_stamp_is_alive_and_parses_back() {
        let suffix = token_suffix();
        assert!(suffix.starts_with('@'), "{suffix}");
        let token = format!("host-1/0b7f3c9e{suffix}");
        assert_eq!(parse(&token).as_ref(), OURS.as_ref());
        assert!(!holder_is_dead(&token));
    }

    #[test]
    fn a_finished_child_is_dead_and_foreign_or_bare_tokens_are_not() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        let start = start_time(pid);
        child.wait().expect("wait");
        let ours = OURS.as_ref().expect("stamp");
        if let Some(start) = start {
            let token = format!("w/u@{}.{}.{pid}.{start}", ours.boot, ours.pid_ns);
            assert!(holder_is_dead(&token));
            let other_ns = format!("w/u@{}.{}.{pid}.{start}", ours.boot, ours.pid_ns + 1);
            assert!(
                !holder_is_dead(&other_ns),
                "another pid namespace is never judged"
            );
            let other_boot = format!("w/u@ffffffff.{}.{pid}.{start}", ours.pid_ns);
            assert!(ours.boot == "ffffffff" || !holder_is_dead(&other_boot));
        }
        assert!(!holder_is_dead("host-1/uuid-without-stamp"));
        assert!(!holder_is_dead("host-1/uuid@nothex00.1.2.3"));
    }
}
