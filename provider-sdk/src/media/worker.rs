//! The packet-forwarding thread: one epoll loop over the sockets of its calls,
//! batched with `recvmmsg`/`sendmmsg` (up to [`BATCH`] packets per system
//! call) into buffers allocated once per thread, so forwarding allocates nothing.
//!
//! Sockets are added and removed by messages sent from the control side
//! (allocating or dropping a call) and an eventfd that wakes the loop.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use super::ports::BoundPair;
use super::relay::{CallShared, StreamShared};
use super::rtp_stats::RtpHeaderFields;

/// Packets per system call.
pub const BATCH: usize = 64;
/// Larger than any RTP packet on an Ethernet path; longer datagrams are
/// truncated by the kernel, detected and dropped.
const BUF_SIZE: usize = 2048;
const WAKE_TOKEN: u64 = u64::MAX;

/// What the forwarding thread is told to do.
pub enum Command {
    Add {
        call: u64,
        sockets: Vec<SocketEntry>,
    },
    Remove {
        call: u64,
    },
    Shutdown,
}

/// Whether a socket is a stream's RTP (possibly rtcp-muxed) or RTCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    Rtp,
    Rtcp,
}

/// One socket the thread reads, and where its packets go: out of the paired
/// stream's sockets on the other leg.
pub struct SocketEntry {
    pub kind: SocketKind,
    /// The pair this socket belongs to (the stream receiving from one endpoint).
    pub own: Arc<BoundPair>,
    pub own_state: Arc<StreamShared>,
    /// The other leg's pair of the same m= line (sends towards the other endpoint).
    pub peer: Arc<BoundPair>,
    pub peer_state: Arc<StreamShared>,
    pub call: Arc<CallShared>,
}

impl SocketEntry {
    fn fd(&self) -> RawFd {
        match self.kind {
            SocketKind::Rtp => self.own.rtp.as_raw_fd(),
            SocketKind::Rtcp => self.own.rtcp.as_raw_fd(),
        }
    }
}

/// How a datagram received on an RTP port is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// RTP: accounted in the statistics and forwarded.
    Rtp(RtpHeaderFields),
    /// RTCP multiplexed on the RTP port (RFC 5761 section 4: second byte 192-223).
    Rtcp,
    /// Looks like RTP (version 2) but the header is truncated: dropped, counted.
    Malformed,
    /// Not RTP/RTCP at all (STUN, DTLS, ZRTP share the port, RFC 7983):
    /// forwarded untouched, counted, not fed to the statistics.
    Other,
}

/// Classifies a datagram received on an RTP port.
pub fn classify(packet: &[u8]) -> PacketClass {
    match packet {
        [] => PacketClass::Malformed,
        [b0, rest @ ..] if b0 >> 6 == 2 => match rest.first() {
            Some(192..=223) if packet.len() >= 8 => PacketClass::Rtcp,
            Some(192..=223) => PacketClass::Malformed,
            _ => match RtpHeaderFields::parse(packet) {
                Some(h) => PacketClass::Rtp(h),
                None => PacketClass::Malformed,
            },
        },
        _ => PacketClass::Other,
    }
}

/// Preallocated buffers for one `recvmmsg` and two `sendmmsg` batches.
struct Batch {
    bufs: Box<[[u8; BUF_SIZE]]>,
    lens: [usize; BATCH],
    addrs: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    out_iov: Box<[libc::iovec]>,
    out_msgs: Box<[libc::mmsghdr]>,
}

impl Batch {
    fn new() -> Batch {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for
        // which all-zero bytes is a valid value.
        let zeroed_vec = |n| {
            (0..n)
                .map(|_| unsafe { zeroed() })
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Batch {
            bufs: vec![[0u8; BUF_SIZE]; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
            addrs: zeroed_vec(BATCH),
            iovecs: (0..BATCH)
                .map(|_| unsafe { zeroed() })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            msgs: (0..BATCH)
                .map(|_| unsafe { zeroed() })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            out_iov: (0..BATCH)
                .map(|_| unsafe { zeroed() })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            out_msgs: (0..BATCH)
                .map(|_| unsafe { zeroed() })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        }
    }

    /// Receives up to BATCH datagrams; returns how many.
    fn receive(&mut self, fd: RawFd) -> usize {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: BUF_SIZE,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every msg points at buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).unwrap_or(0);
        for i in 0..n {
            let truncated = self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.lens[i] = if truncated {
                0
            } else {
                self.msgs[i].msg_len as usize
            };
        }
        n
    }

    /// Sends the packets with the given indices from `fd` to `dest`; returns
    /// how many the kernel accepted.
    fn send(&mut self, fd: RawFd, dest: SocketAddr, indices: &[usize]) -> usize {
        let (storage, len) = to_sockaddr(dest);
        let mut storage = storage;
        let count = indices.len().min(BATCH);
        for (slot, &i) in indices.iter().take(count).enumerate() {
            self.out_iov[slot] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.lens[i],
            };
            let hdr = &mut self.out_msgs[slot].msg_hdr;
            hdr.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = len;
            hdr.msg_iov = &mut self.out_iov[slot];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the messages point at self's buffers and the local storage, alive during the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.out_msgs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(n) {
                Ok(0) | Err(_) => {
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    break;
                }
                Ok(n) => sent += n,
            }
        }
        sent
    }
}

/// The forwarding loop. Runs until a `Shutdown` command arrives or the control side is gone.
pub fn run(commands: Receiver<Command>, wake: Arc<OwnedFd>, epoch: Instant) {
    let Ok(epoll) = Epoll::new() else {
        tracing::error!(
            "media worker: epoll_create1 failed: {}",
            io::Error::last_os_error()
        );
        return;
    };
    if let Err(e) = epoll.add(wake.as_raw_fd(), WAKE_TOKEN) {
        tracing::error!("media worker: cannot watch wake eventfd: {e}");
        return;
    }
    let mut sockets: HashMap<u64, SocketEntry> = HashMap::new();
    let mut by_call: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut next_token: u64 = 0;
    let mut batch = Batch::new();
    // SAFETY: epoll_event is a plain C struct.
    let mut events: Vec<libc::epoll_event> = (0..256).map(|_| unsafe { zeroed() }).collect();
    let mut rtp_idx = Vec::with_capacity(BATCH);
    let mut rtcp_idx = Vec::with_capacity(BATCH);
    loop {
        // SAFETY: events has room for the count passed.
        let n = unsafe {
            libc::epoll_wait(
                epoll.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(
                "media worker: epoll_wait failed: {}",
                io::Error::last_os_error()
            );
            return;
        }
        for ev in &events[..n as usize] {
            let token = ev.u64;
            if token == WAKE_TOKEN {
                let mut counter = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer from the eventfd.
                unsafe { libc::read(wake.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
                loop {
                    match commands.try_recv() {
                        Ok(Command::Add {
                            call,
                            sockets: entries,
                        }) => {
                            for entry in entries {
                                let token = next_token;
                                next_token += 1;
                                if let Err(e) = epoll.add(entry.fd(), token) {
                                    tracing::error!("media worker: cannot watch socket: {e}");
                                    continue;
                                }
                                sockets.insert(token, entry);
                                by_call.entry(call).or_default().push(token);
                            }
                        }
                        Ok(Command::Remove { call }) => {
                            for token in by_call.remove(&call).unwrap_or_default() {
                                if let Some(entry) = sockets.remove(&token) {
                                    epoll.delete(entry.fd());
                                }
                            }
                        }
                        Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return,
                        Err(TryRecvError::Empty) => break,
                    }
                }
                continue;
            }
            let Some(entry) = sockets.get(&token) else {
                continue;
            };
            forward(entry, &mut batch, epoch, &mut rtp_idx, &mut rtcp_idx);
        }
    }
}

/// Reads one batch from the entry's socket and forwards it.
fn forward(
    entry: &SocketEntry,
    batch: &mut Batch,
    epoch: Instant,
    rtp_idx: &mut Vec<usize>,
    rtcp_idx: &mut Vec<usize>,
) {
    let n = batch.receive(entry.fd());
    if n == 0 {
        return;
    }
    // One timestamp per batch: under light load a batch is a single packet.
    let now_ns = epoch.elapsed().as_nanos() as u64;
    rtp_idx.clear();
    rtcp_idx.clear();
    let mut rtp_seen = false;
    {
        let mut own = entry.own_state.state.lock();
        for i in 0..n {
            let len = batch.lens[i];
            let Some(src) = from_sockaddr(&batch.addrs[i]) else {
                continue;
            };
            // Empty or truncated (oversized) datagrams neither latch nor pass.
            if len == 0 {
                own.counters.malformed += 1;
                continue;
            }
            let packet = &batch.bufs[i][..len];
            // Symmetric RTP: the first packet's source is where the endpoint
            // really is (behind NAT); packets from elsewhere are refused.
            let latched = match entry.kind {
                SocketKind::Rtp => &mut own.latched_rtp,
                SocketKind::Rtcp => &mut own.latched_rtcp,
            };
            match latched {
                Some(addr) if *addr != src => {
                    own.counters.foreign_source += 1;
                    continue;
                }
                Some(_) => {}
                None => *latched = Some(src),
            }
            match entry.kind {
                SocketKind::Rtcp => {
                    own.counters.rtcp += 1;
                    rtcp_idx.push(i);
                }
                SocketKind::Rtp => match classify(packet) {
                    PacketClass::Rtp(h) => {
                        own.stats.record(&h, len, now_ns);
                        rtp_seen = true;
                        rtp_idx.push(i);
                    }
                    PacketClass::Rtcp => {
                        // Muxed RTCP also latches the RTCP destination.
                        own.latched_rtcp.get_or_insert(src);
                        own.counters.rtcp += 1;
                        rtcp_idx.push(i);
                    }
                    PacketClass::Other => {
                        own.counters.non_rtp += 1;
                        rtp_idx.push(i);
                    }
                    PacketClass::Malformed => own.counters.malformed += 1,
                },
            }
        }
    }
    if rtp_seen {
        entry.call.last_rtp_ns.fetch_max(now_ns, Ordering::Relaxed);
    }
    // Where the other endpoint receives: its latched source, else its SDP.
    let (rtp_dest, rtcp_dest, mux) = {
        let peer = entry.peer_state.state.lock();
        let rtp = peer.latched_rtp.or(peer.sdp_rtp);
        if peer.rtcp_mux {
            (rtp, rtp, true)
        } else {
            (rtp, peer.latched_rtcp.or(peer.sdp_rtcp), false)
        }
    };
    let mut undeliverable = 0u64;
    let mut sent = 0u64;
    let mut deliver = |indices: &[usize], fd: RawFd, dest: Option<SocketAddr>| match dest {
        Some(dest) if !indices.is_empty() => {
            let ok = batch.send(fd, dest, indices);
            sent += ok as u64;
            undeliverable += (indices.len() - ok) as u64;
        }
        _ => undeliverable += indices.len() as u64,
    };
    deliver(rtp_idx, entry.peer.rtp.as_raw_fd(), rtp_dest);
    let rtcp_fd = if mux {
        entry.peer.rtp.as_raw_fd()
    } else {
        entry.peer.rtcp.as_raw_fd()
    };
    deliver(rtcp_idx, rtcp_fd, rtcp_dest);
    if sent > 0 || undeliverable > 0 {
        let mut own = entry.own_state.state.lock();
        own.counters.forwarded += sent;
        own.counters.undeliverable += undeliverable;
    }
}

struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn delete(&self, fd: RawFd) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }
}

/// Creates the eventfd used to wake a worker.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Wakes the worker watching `fd`.
pub fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a u64 to an eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_demultiplexes_per_rfc_7983_and_5761() {
        let mut rtp = [0u8; 172];
        rtp[0] = 0x80;
        assert!(matches!(classify(&rtp), PacketClass::Rtp(_)));
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert_eq!(classify(&rtcp), PacketClass::Rtcp);
        // STUN binding request starts with 0x00 0x01.
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), PacketClass::Other);
        // DTLS handshake record.
        assert_eq!(classify(&[22, 0xfe, 0xfd]), PacketClass::Other);
        assert_eq!(classify(&[0x80, 0]), PacketClass::Malformed);
        assert_eq!(classify(&[]), PacketClass::Malformed);
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:4000", "[::1]:5004", "10.1.2.3:65535"] {
            let a: SocketAddr = a.parse().unwrap();
            let (s, _) = to_sockaddr(a);
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }
}
