//! Load generator and benchmark harness for the RTP relay (used by
//! `ops/bench/rtp-relay.sh`, which runs it against this relay and rtpengine).
//!
//! ```text
//! rtp_relay_bench relay --ng 127.0.0.1:22230 --ports 20000-39999
//!     Runs the relay with one forwarding thread, controlled like rtpengine
//!     over the ng protocol (bencode over UDP: ping, offer, answer, delete).
//! rtp_relay_bench load --ng 127.0.0.1:22230 --rate 50000 --seconds 10 [--pid N] [--calls N] [--tick-us 250]
//!     Sets up calls through the relay at --ng (default: rate/50 calls, i.e.
//!     one 20 ms G.711 stream each), sends 172-byte RTP packets carrying
//!     their send time, receives them after the relay and prints throughput,
//!     loss, one-way latency percentiles and (with --pid) the relay's CPU use.
//! rtp_relay_bench load --direct --rate 50000 --seconds 10
//!     The same without a relay: the loopback baseline.
//! ```

use std::collections::HashMap;
use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use provider_sdk::media::sdp_rewrite::SdpMedia;
use provider_sdk::media::{CallMedia, Leg, MediaRelay, RelayConfig};

const PACKET: usize = 172;
const WARMUP: Duration = Duration::from_secs(1);
/// Latency histogram: 1 µs buckets up to 100 ms.
const BUCKETS: usize = 100_000;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = args.split_first().ok_or_else(|| {
        anyhow!("usage: rtp_relay_bench relay|load [options] (see the source header)")
    })?;
    let opts = Options::parse(rest)?;
    match mode.as_str() {
        "relay" => run_relay(&opts),
        "load" => run_load(&opts),
        other => bail!("unknown mode {other:?}: expected relay or load"),
    }
}

struct Options(HashMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let key = key
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("expected --option, got {key:?}"))?;
            if key == "direct" {
                map.insert(key.to_owned(), String::new());
                continue;
            }
            let value = it.next().ok_or_else(|| anyhow!("--{key} needs a value"))?;
            map.insert(key.to_owned(), value.clone());
        }
        Ok(Options(map))
    }

    fn get<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            Some(v) => v.parse().map_err(|e| anyhow!("--{key} {v:?}: {e}")),
            None => default.ok_or_else(|| anyhow!("--{key} is required")),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

// ---------------------------------------------------------------- bencode

#[derive(Debug, Clone, PartialEq)]
enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    Dict(Vec<(Vec<u8>, Bencode)>),
}

impl Bencode {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                let mut d = d.clone();
                d.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'd');
                for (k, v) in &d {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    fn decode(input: &[u8]) -> Result<(Bencode, &[u8])> {
        match input.first() {
            Some(b'i') => {
                let end = input
                    .iter()
                    .position(|c| *c == b'e')
                    .ok_or_else(|| anyhow!("bencode: open integer"))?;
                let n = std::str::from_utf8(&input[1..end])?.parse()?;
                Ok((Bencode::Int(n), &input[end + 1..]))
            }
            Some(b'l') | Some(b'd') => {
                let dict = input[0] == b'd';
                let mut rest = &input[1..];
                let mut items = Vec::new();
                while rest.first() != Some(&b'e') {
                    let (v, r) = Bencode::decode(rest)?;
                    items.push(v);
                    rest = r;
                }
                let rest = &rest[1..];
                if !dict {
                    return Ok((Bencode::List(items), rest));
                }
                if items.len() % 2 != 0 {
                    bail!("bencode: dictionary with a key and no value");
                }
                let mut pairs = Vec::new();
                let mut it = items.into_iter();
                while let (Some(Bencode::Bytes(k)), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Ok((Bencode::Dict(pairs), rest))
            }
            Some(c) if c.is_ascii_digit() => {
                let colon = input
                    .iter()
                    .position(|c| *c == b':')
                    .ok_or_else(|| anyhow!("bencode: no colon"))?;
                let len: usize = std::str::from_utf8(&input[..colon])?.parse()?;
                let start = colon + 1;
                let bytes = input
                    .get(start..start + len)
                    .ok_or_else(|| anyhow!("bencode: short string"))?;
                Ok((Bencode::Bytes(bytes.to_vec()), &input[start + len..]))
            }
            _ => bail!("bencode: unexpected input"),
        }
    }

    fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Bencode::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

fn dict(pairs: &[(&str, &[u8])]) -> Bencode {
    Bencode::Dict(
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Bencode::Bytes(v.to_vec())))
            .collect(),
    )
}

// ---------------------------------------------------------------- relay side

/// Our relay behind a minimal ng-protocol server, so the load generator
/// drives it exactly as it drives rtpengine.
fn run_relay(opts: &Options) -> Result<()> {
    let ng: SocketAddr = opts.get("ng", None)?;
    let ports: String = opts.get("ports", Some("20000-39999".into()))?;
    let (lo, hi) = ports
        .split_once('-')
        .ok_or_else(|| anyhow!("--ports LOW-HIGH"))?;
    let mut config = RelayConfig::loopback(lo.parse()?..=hi.parse()?);
    config.workers = opts.get("workers", Some(1))?;
    config.media_timeout = Duration::from_secs(3600);
    let relay = MediaRelay::new(config).context("starting the relay")?;
    let control = UdpSocket::bind(ng).with_context(|| format!("binding ng control {ng}"))?;
    eprintln!(
        "relay: ng on {ng}, ports {ports}, {} forwarding thread(s)",
        relay.config().workers
    );
    let mut calls: HashMap<String, CallMedia> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = control.recv_from(&mut buf).context("ng receive")?;
        let msg = &buf[..n];
        let Some(space) = msg.iter().position(|c| *c == b' ') else {
            continue;
        };
        let (cookie, body) = (&msg[..space], &msg[space + 1..]);
        let reply = match Bencode::decode(body) {
            Ok((req, _)) => handle_ng(&relay, &mut calls, &req),
            Err(e) => dict(&[
                ("result", b"error"),
                ("error-reason", e.to_string().as_bytes()),
            ]),
        };
        let mut out = cookie.to_vec();
        out.push(b' ');
        reply.encode(&mut out);
        control.send_to(&out, from).context("ng reply")?;
    }
}

fn handle_ng(relay: &MediaRelay, calls: &mut HashMap<String, CallMedia>, req: &Bencode) -> Bencode {
    let result = (|| -> Result<Option<Vec<u8>>> {
        let command = req.text("command").ok_or_else(|| anyhow!("no command"))?;
        let call_id = req.text("call-id").unwrap_or_default();
        let sdp = match req.get("sdp") {
            Some(Bencode::Bytes(b)) => Some(b.clone()),
            _ => None,
        };
        match command.as_str() {
            "ping" => Ok(None),
            "offer" => {
                let sdp = sdp.ok_or_else(|| anyhow!("offer without sdp"))?;
                if !calls.contains_key(&call_id) {
                    calls.insert(call_id.clone(), relay.allocate_call()?);
                }
                let call = calls
                    .get(&call_id)
                    .ok_or_else(|| anyhow!("call vanished"))?;
                Ok(Some(call.rewrite_offer(Leg::A, &sdp)?))
            }
            "answer" => {
                let sdp = sdp.ok_or_else(|| anyhow!("answer without sdp"))?;
                let call = calls
                    .get(&call_id)
                    .ok_or_else(|| anyhow!("unknown call {call_id:?}"))?;
                Ok(Some(call.rewrite_answer(Leg::B, &sdp)?))
            }
            "delete" => {
                calls.remove(&call_id);
                Ok(None)
            }
            other => bail!("unsupported command {other:?}"),
        }
    })();
    match result {
        Ok(None) if req.text("command").as_deref() == Some("ping") => dict(&[("result", b"pong")]),
        Ok(None) => dict(&[("result", b"ok")]),
        Ok(Some(sdp)) => dict(&[("result", b"ok"), ("sdp", &sdp)]),
        Err(e) => dict(&[
            ("result", b"error"),
            ("error-reason", format!("{e:#}").as_bytes()),
        ]),
    }
}

// ---------------------------------------------------------------- load side

struct NgClient {
    socket: UdpSocket,
    server: SocketAddr,
    cookie: u64,
    started: u128,
}

impl NgClient {
    fn new(server: SocketAddr) -> Result<NgClient> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(NgClient {
            socket,
            server,
            cookie: 0,
            started,
        })
    }

    fn request(&mut self, req: &Bencode) -> Result<Bencode> {
        for _attempt in 0..3 {
            self.cookie += 1;
            // rtpengine caches replies by cookie (for retransmissions): cookies must
            // be unique across runs, not only within one.
            let cookie = format!("{}-{}-{}", std::process::id(), self.started, self.cookie);
            let mut out = format!("{cookie} ").into_bytes();
            req.encode(&mut out);
            self.socket.send_to(&out, self.server).context("ng send")?;
            let mut buf = vec![0u8; 65536];
            loop {
                match self.socket.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let msg = &buf[..n];
                        let Some(space) = msg.iter().position(|c| *c == b' ') else {
                            continue;
                        };
                        if &msg[..space] != cookie.as_bytes() {
                            continue; // a late answer to an earlier attempt
                        }
                        let (reply, _) = Bencode::decode(&msg[space + 1..])?;
                        match reply.text("result").as_deref() {
                            Some("ok") | Some("pong") => return Ok(reply),
                            _ => bail!("ng error: {:?}", reply.text("error-reason")),
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e).context("ng receive"),
                }
            }
        }
        bail!("no answer from ng server {}", self.server)
    }
}

fn endpoint_sdp(addr: SocketAddr) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
    .into_bytes()
}

fn relay_target(reply: &Bencode) -> Result<SocketAddr> {
    let Some(Bencode::Bytes(sdp)) = reply.get("sdp") else {
        bail!("ng reply without sdp")
    };
    let media = SdpMedia::parse(sdp)?;
    media
        .streams
        .first()
        .and_then(|s| s.rtp)
        .ok_or_else(|| anyhow!("relay SDP has no media address"))
}

struct Stream {
    sender: UdpSocket,
    receiver: UdpSocket,
    target: SocketAddr,
}

fn bind_local() -> Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").context("binding a load socket")?;
    s.set_nonblocking(true)?;
    let sock = socket2::SockRef::from(&s);
    let _ = sock.set_recv_buffer_size(1 << 20);
    Ok(s)
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the ")" of the command name: state is field 3; utime/stime are 14/15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f.get(11)
        .ok_or_else(|| anyhow!("short stat"))?
        .parse::<u64>()?
        + f.get(12)
            .ok_or_else(|| anyhow!("short stat"))?
            .parse::<u64>()?)
}

fn run_load(opts: &Options) -> Result<()> {
    let rate: u64 = opts.get("rate", None)?;
    let seconds: u64 = opts.get("seconds", Some(10))?;
    if rate == 0 || seconds == 0 || seconds > 120 {
        bail!("--rate must be positive and --seconds within 1..=120 (load tests are bounded)");
    }
    let calls: usize = opts.get("calls", Some((rate / 50).max(1) as usize))?;
    let pid: Option<u32> = opts.0.get("pid").map(|p| p.parse()).transpose()?;
    let label: String = opts.get(
        "label",
        Some(if opts.has("direct") {
            "direct".into()
        } else {
            "relay".into()
        }),
    )?;
    // Sleep precisely: the default 50 µs timer slack would smear the pacing.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0) };

    let mut streams = Vec::with_capacity(calls);
    let mut ng = match opts.has("direct") {
        true => None,
        false => Some(NgClient::new(opts.get("ng", None)?)?),
    };
    if let Some(ng) = &mut ng {
        ng.request(&dict(&[("command", b"ping")]))
            .context("relay does not answer ping")?;
    }
    for i in 0..calls {
        let (sender, receiver) = (bind_local()?, bind_local()?);
        let target = match &mut ng {
            None => receiver.local_addr()?,
            Some(ng) => {
                let call_id = format!("bench-{}-{i}", std::process::id());
                let offer = ng.request(&dict(&[
                    ("command", b"offer"),
                    ("call-id", call_id.as_bytes()),
                    ("from-tag", b"a"),
                    ("sdp", &endpoint_sdp(sender.local_addr()?)),
                ]))?;
                let _towards_b = relay_target(&offer)?;
                let answer = ng.request(&dict(&[
                    ("command", b"answer"),
                    ("call-id", call_id.as_bytes()),
                    ("from-tag", b"a"),
                    ("to-tag", b"b"),
                    ("sdp", &endpoint_sdp(receiver.local_addr()?)),
                ]))?;
                relay_target(&answer)?
            }
        };
        streams.push(Stream {
            sender,
            receiver,
            target,
        });
    }

    let epoch = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let receivers: Vec<UdpSocket> = streams
        .iter()
        .map(|s| s.receiver.try_clone())
        .collect::<io::Result<_>>()?;
    let rx_done = Arc::clone(&done);
    let receiver = std::thread::spawn(move || receive(receivers, epoch, rx_done));

    // Pace in small ticks (--tick-us, default 250 µs), round-robin over the
    // calls: each call sends every calls/rate seconds (20 ms at the default
    // call count), and no burst is larger than rate × tick.
    let mut seq = vec![0u16; calls];
    let mut packet = [0u8; PACKET];
    packet[0] = 0x80;
    let total = rate * seconds;
    let mut sent = 0u64;
    let mut send_errors = 0u64;
    let mut next = 0usize;
    let tick_us: u64 = opts.get("tick-us", Some(250))?;
    if !(10..=20_000).contains(&tick_us) {
        bail!("--tick-us must be within 10..=20000");
    }
    let tick_ns = tick_us * 1000;
    let start = Instant::now();
    let mut cpu_start = None;
    while sent < total {
        let elapsed = start.elapsed();
        if cpu_start.is_none() && elapsed >= WARMUP {
            cpu_start = Some((Instant::now(), pid.map(cpu_ticks).transpose()?, 0u64));
        }
        let ticks_done = elapsed.as_nanos() as u64 / tick_ns + 1;
        let due = (ticks_done * tick_ns * rate / 1_000_000_000).min(total);
        while sent < due {
            let s = &streams[next];
            seq[next] = seq[next].wrapping_add(1);
            packet[1] = 0;
            packet[2..4].copy_from_slice(&seq[next].to_be_bytes());
            packet[4..8].copy_from_slice(&(u32::from(seq[next]) * 160).to_be_bytes());
            packet[8..12].copy_from_slice(&(next as u32).to_be_bytes());
            let now = epoch.elapsed().as_nanos() as u64;
            packet[12..20].copy_from_slice(&now.to_be_bytes());
            if s.sender.send_to(&packet, s.target).is_err() {
                send_errors += 1;
            }
            sent += 1;
            next = (next + 1) % calls;
        }
        let next_tick = start
            + Duration::from_nanos((start.elapsed().as_nanos() as u64 / tick_ns + 1) * tick_ns);
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let send_time = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let rx = receiver
        .join()
        .map_err(|_| anyhow!("receiver thread panicked"))??;
    // The relay's CPU from the end of the warm-up until the backlog drained,
    // against the packets it delivered that were sent after the warm-up.
    let cpu_end = (Instant::now(), pid.map(cpu_ticks).transpose()?, rx.measured);

    if let Some(ng) = &mut ng {
        for i in 0..calls {
            let call_id = format!("bench-{}-{i}", std::process::id());
            let _ = ng.request(&dict(&[
                ("command", b"delete"),
                ("call-id", call_id.as_bytes()),
                ("from-tag", b"a"),
            ]));
        }
    }

    let offered_pps = sent as f64 / send_time.as_secs_f64();
    let received_pps =
        rx.measured as f64 / (rx.last_ns.saturating_sub(rx.first_measured_ns).max(1) as f64 / 1e9);
    let loss = 100.0 * (sent.saturating_sub(rx.received)) as f64 / sent.max(1) as f64;
    let mut line = format!(
        "{label}: rate={rate} calls={calls} sent={sent} received={} loss={loss:.3}% offered_pps={offered_pps:.0} received_pps={received_pps:.0} latency_us p50={} p99={} p99.9={} max={}",
        rx.received,
        rx.percentile(50.0),
        rx.percentile(99.0),
        rx.percentile(99.9),
        rx.max_us,
    );
    if let (Some((t0, Some(c0), s0)), (t1, Some(c1), s1)) = (cpu_start, cpu_end) {
        // SAFETY: sysconf is a plain query.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu_s = (c1 - c0) as f64 / hz;
        let wall = (t1 - t0).as_secs_f64();
        let pkts = s1.saturating_sub(s0) as f64;
        line += &format!(
            " relay_cpu={:.1}% pps_per_core={:.0}",
            100.0 * cpu_s / wall,
            if cpu_s > 0.0 {
                pkts / cpu_s
            } else {
                f64::INFINITY
            }
        );
    }
    if send_errors > 0 {
        line += &format!(" send_errors={send_errors}");
    }
    println!("{line}");
    Ok(())
}

struct Received {
    received: u64,
    measured: u64,
    first_measured_ns: u64,
    last_ns: u64,
    hist: Vec<u64>,
    max_us: u64,
}

impl Received {
    fn percentile(&self, p: f64) -> String {
        let n: u64 = self.hist.iter().sum();
        if n == 0 {
            return "-".into();
        }
        let want = ((n as f64) * p / 100.0).ceil() as u64;
        let mut acc = 0;
        for (us, c) in self.hist.iter().enumerate() {
            acc += c;
            if acc >= want {
                return if us + 1 == BUCKETS {
                    format!(">{}", BUCKETS - 1)
                } else {
                    us.to_string()
                };
            }
        }
        "-".into()
    }
}

fn receive(sockets: Vec<UdpSocket>, epoch: Instant, done: Arc<AtomicBool>) -> Result<Received> {
    // SAFETY: plain system call, checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", io::Error::last_os_error());
    }
    for (i, s) in sockets.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: ev lives for the call.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) } < 0 {
            bail!("epoll_ctl: {}", io::Error::last_os_error());
        }
    }
    const B: usize = 64;
    let mut bufs = vec![[0u8; 256]; B];
    // SAFETY: plain C structs, zero is valid.
    let mut iov: Vec<libc::iovec> = (0..B).map(|_| unsafe { zeroed() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = (0..B).map(|_| unsafe { zeroed() }).collect();
    let mut events: Vec<libc::epoll_event> = (0..256).map(|_| unsafe { zeroed() }).collect();
    let mut r = Received {
        received: 0,
        measured: 0,
        first_measured_ns: 0,
        last_ns: 0,
        hist: vec![0; BUCKETS],
        max_us: 0,
    };
    let warmup_ns = WARMUP.as_nanos() as u64;
    while !done.load(Ordering::Relaxed) {
        // SAFETY: events has room for the count passed.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 50) };
        for ev in events.iter().take(n.max(0) as usize) {
            let fd = sockets[ev.u64 as usize].as_raw_fd();
            for i in 0..B {
                iov[i] = libc::iovec {
                    iov_base: bufs[i].as_mut_ptr().cast(),
                    iov_len: 256,
                };
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: all messages point at live buffers.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    B as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            let now = epoch.elapsed().as_nanos() as u64;
            for (i, m) in msgs.iter().take(got.max(0) as usize).enumerate() {
                if (m.msg_len as usize) < 20 {
                    continue;
                }
                r.received += 1;
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&bufs[i][12..20]);
                let sent = u64::from_be_bytes(ts);
                if sent < warmup_ns {
                    continue;
                }
                if r.measured == 0 {
                    r.first_measured_ns = now;
                }
                r.measured += 1;
                r.last_ns = now;
                let us = now.saturating_sub(sent) / 1000;
                r.max_us = r.max_us.max(us);
                r.hist[(us as usize).min(BUCKETS - 1)] += 1;
            }
        }
    }
    // SAFETY: closing the epoll descriptor we created.
    unsafe { libc::close(ep) };
    Ok(r)
}
