//! Free loopback ports for the servers a test starts.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

/// Ports [`free_port`] has handed out in this process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it), never one
/// this process was given before: the port is free again once the probe closes, so the OS
/// may pick it twice for servers started at once, and the second would find it taken.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding 127.0.0.1:0 to find a free port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// Next start of a block in [`free_port_range`]; each test process walks its own region
/// (derived from its pid) so that parallel test processes rarely probe the same ports.
static NEXT_RANGE_START: AtomicU16 = AtomicU16::new(0);

/// `count` consecutive free ports on 127.0.0.1 (for a server's passive range), taken
/// from 20000-29999, below Linux's ephemeral range so the OS will not hand them out.
pub fn free_port_range(count: u16) -> (u16, u16) {
    let _ = NEXT_RANGE_START.compare_exchange(
        0,
        20_000 + (std::process::id() % 100) as u16 * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..1000 {
        let mut start = NEXT_RANGE_START.fetch_add(count, Ordering::SeqCst);
        if start > 30_000 - count {
            NEXT_RANGE_START.store(20_000, Ordering::SeqCst);
            start = NEXT_RANGE_START.fetch_add(count, Ordering::SeqCst);
        }
        let all_free = (start..start + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return (start, start + count - 1);
        }
    }
    panic!("no block of {count} free ports in 20000-29999");
}
