//! RTP/RTCP port pairs from a configured range.
//!
//! [`PortAllocator::allocate`] hands out an even RTP port and the RTCP port
//! above it, both already bound, so a pair is never given out twice by this
//! process and a port taken by another process is simply skipped. The pair is
//! returned to the pool when the [`BoundPair`] (and so both sockets) is dropped.
//! Allocation walks the range round-robin so a just-released pair is not
//! reused at once (late packets of the previous call would land in the new one).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Arc;

use parking_lot::Mutex;

use super::MediaError;

/// Kernel socket buffers: large enough to absorb a scheduling hiccup at
/// 100k packets per second without drops.
const SOCKET_BUFFER: usize = 1 << 20;

/// Hands out port pairs from a range.
#[derive(Debug)]
pub struct PortAllocator {
    first_even: u16,
    range: (u16, u16),
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    in_use: Vec<bool>,
    next: usize,
}

/// A bound RTP socket (even port) and RTCP socket (port + 1). Dropping it
/// closes both and returns the pair to the pool.
#[derive(Debug)]
pub struct BoundPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
    lease: Lease,
}

#[derive(Debug)]
struct Lease {
    pool: Arc<PortAllocator>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.state.lock().in_use.get_mut(self.index) {
            *slot = false;
        }
    }
}

impl PortAllocator {
    /// A pool over `range`. Needs room for at least one even/odd pair.
    pub fn new(range: RangeInclusive<u16>) -> Result<Arc<PortAllocator>, MediaError> {
        let (start, end) = (*range.start(), *range.end());
        let first_even = start.saturating_add(start % 2);
        if start == 0 || first_even >= end {
            return Err(MediaError::Config(format!(
                "port range {start}-{end} holds no even/odd port pair (ports must be 1-65535)"
            )));
        }
        let pairs = usize::from((end - first_even).div_ceil(2));
        Ok(Arc::new(PortAllocator {
            first_even,
            range: (start, end),
            state: Mutex::new(PoolState {
                in_use: vec![false; pairs],
                next: 0,
            }),
        }))
    }

    /// How many pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.state.lock().in_use.len()
    }

    /// Binds the next free pair on `ip`.
    pub fn allocate(self: &Arc<Self>, ip: IpAddr) -> Result<BoundPair, MediaError> {
        let mut state = self.state.lock();
        let pairs = state.in_use.len();
        for step in 0..pairs {
            let index = (state.next + step) % pairs;
            if state.in_use[index] {
                continue;
            }
            let port = self.first_even + 2 * index as u16;
            // A port held by another process is skipped, not an error.
            let Ok(rtp) = bind(ip, port) else { continue };
            let Ok(rtcp) = bind(ip, port + 1) else {
                continue;
            };
            state.in_use[index] = true;
            state.next = (index + 1) % pairs;
            return Ok(BoundPair {
                rtp,
                rtcp,
                port,
                lease: Lease {
                    pool: Arc::clone(self),
                    index,
                },
            });
        }
        Err(MediaError::PortsExhausted {
            first: self.range.0,
            last: self.range.1,
        })
    }
}

impl BoundPair {
    /// The pool index (for diagnostics).
    pub fn index(&self) -> usize {
        self.lease.index
    }
}

fn bind(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, port))?;
    socket.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&socket);
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    Ok(socket)
}
