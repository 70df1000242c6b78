//! The B2BUA over TCP and TLS, on loopback: SIPp over TCP (`-t t1`) as
//! caller and callee, and small rustls peers written here for TLS, because
//! Debian's SIPp is built without OpenSSL (`-t l1` answers "To use a TLS
//! transport you must compile SIPp with OpenSSL"). Certificates are made
//! with rcgen for each test: a CA and a leaf for 127.0.0.1.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use provider_sdk::sip::b2bua::{Admission, B2buaConfig, StreamLimits, TlsInbound};
use provider_sdk::sip::call::Leg;
use provider_sdk::sip::wire::{frame_stream, StreamFrame};
use provider_sdk::sip::{Outcome, SipTarget};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bound on every single wait of a test peer.
const WAIT: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    SocketAddr::new(LOOPBACK, 0)
}

fn with_tcp(config: &mut B2buaConfig) {
    config.tcp = Some(any_port());
}

/// A server configuration with a certificate for `san`, and a client
/// configuration trusting the CA that issued it.
fn tls_pair(san: SanType) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "SIP test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "SIP test peer");
    leaf.subject_alt_names = vec![san];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn loopback_san() -> SanType {
    SanType::IpAddress(LOOPBACK)
}

/// One end of a SIP stream, written by hand: sends text, reads messages
/// framed by Content-Length.
struct Peer<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    fn new(io: S) -> Self {
        Peer {
            io,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, msg: &str) {
        self.io.write_all(msg.as_bytes()).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// The next message (keep-alives skipped).
    async fn recv(&mut self) -> String {
        let reading = async {
            let mut chunk = [0u8; 8192];
            loop {
                match frame_stream(&self.buf) {
                    StreamFrame::Complete(n) => {
                        let msg: Vec<u8> = self.buf.drain(..n).collect();
                        return String::from_utf8_lossy(&msg).trim_start().to_owned();
                    }
                    StreamFrame::KeepAlive(n) => {
                        self.buf.drain(..n);
                    }
                    StreamFrame::Broken => panic!("the B2BUA sent a broken frame: {:?}", self.buf),
                    StreamFrame::Incomplete => {
                        let n = self.io.read(&mut chunk).await.expect("read");
                        assert!(n > 0, "the connection closed while waiting for a message");
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        };
        tokio::time::timeout(WAIT, reading)
            .await
            .expect("no message within the bound")
    }

    /// The next response, skipping provisional ones.
    async fn final_response(&mut self) -> String {
        loop {
            let msg = self.recv().await;
            if !msg.starts_with("SIP/2.0 1") {
                return msg;
            }
        }
    }

    /// Everything the other end sends until it closes the connection.
    async fn until_closed(&mut self) -> Vec<u8> {
        let reading = async {
            let mut chunk = [0u8; 8192];
            loop {
                match self.io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return std::mem::take(&mut self.buf),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(WAIT, reading)
            .await
            .expect("the B2BUA did not close the connection")
    }
}

/// The first value of a header field in a message.
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

const SDP: &str = "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn options(transport: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:b2bua@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bKopt{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:b2bua@127.0.0.1>\r\n\
         Call-ID: options-{n}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A caller's request in its own dialog (INVITE with SDP, ACK, BYE).
fn caller_request(transport: &str, method: &str, cseq: u32, to: &str, branch: &str) -> String {
    let lower = transport.to_ascii_lowercase();
    let body = if method == "INVITE" { SDP } else { "" };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:+4930123@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:5998;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=caller1\r\nTo: {to}\r\n\
         Call-ID: {lower}-caller@127.0.0.1\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:caller@127.0.0.1:5998;transport={lower}>\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A callee's answer to `req`, with our To tag and optionally SDP.
fn answer(req: &str, status: &str, sdp: bool) -> String {
    let to = header(req, "To");
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=callee1")
    };
    let body = if sdp { SDP } else { "" };
    let content_type = if sdp {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:callee@127.0.0.1;transport=tls>\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        header(req, "Via"),
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        body.len()
    )
}

#[tokio::test]
async fn tcp_caller_udp_callee_bye_from_caller() {
    let callee = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua_with(vec![callee.target()], Duration::from_secs(10), with_tcp).await;
    let caller = spawn_sipp_tcp("uac_call.xml", b.tcp_addr(), &[]);
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
    assert!(
        matches!(outcomes(&r).as_slice(), [Outcome::Answered]),
        "{r:?}"
    );
}

#[tokio::test]
async fn tcp_caller_udp_callee_bye_from_callee() {
    let callee = spawn_sipp("uas_hangup.xml", None);
    settle().await;
    let b = b2bua_with(vec![callee.target()], Duration::from_secs(10), with_tcp).await;
    // The callee's BYE reaches the caller on the connection its INVITE came on.
    let caller = spawn_sipp_tcp("uac_wait_bye.xml", b.tcp_addr(), &[]);
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Callee));
}

#[tokio::test]
async fn udp_caller_tcp_callee_bye_from_caller() {
    let callee = spawn_sipp_tcp("uas_answer.xml", None, &[]);
    settle().await;
    let b = b2bua(vec![callee.tcp_target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
}

#[tokio::test]
async fn udp_caller_tcp_callee_bye_from_callee() {
    let callee = spawn_sipp_tcp("uas_hangup.xml", None, &[]);
    settle().await;
    let b = b2bua(vec![callee.tcp_target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_wait_bye.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Callee));
}

#[tokio::test]
async fn cancel_over_tcp_reaches_the_tcp_callee() {
    let callee = spawn_sipp_tcp("uas_ringing.xml", None, &[]);
    settle().await;
    let b = b2bua_with(vec![callee.tcp_target()], Duration::from_secs(10), with_tcp).await;
    let caller = spawn_sipp_tcp("uac_cancel.xml", b.tcp_addr(), &[]);
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(487));
    assert!(
        matches!(outcomes(&r).as_slice(), [Outcome::Cancelled]),
        "{r:?}"
    );
}

#[tokio::test]
async fn closed_tcp_port_fails_over_to_the_next_udp_target() {
    let closed = SipTarget::parse(&format!(
        "sip:callee@127.0.0.1:{};transport=tcp",
        free_tcp_port()
    ))
    .unwrap();
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(vec![closed, second.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    second.succeeded().await;
    let r = record(&b).await;
    assert!(
        matches!(
            outcomes(&r).as_slice(),
            [Outcome::TransportError { .. }, Outcome::Answered]
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn tls_caller_to_udp_callee() {
    let (server, client) = tls_pair(loopback_san());
    let callee = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua_with(vec![callee.target()], Duration::from_secs(10), |c| {
        c.tls = Some(TlsInbound {
            bind: any_port(),
            config: server,
        })
    })
    .await;
    let tcp = TcpStream::connect(b.tls_addr().expect("tls listener"))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::IpAddress(LOOPBACK.into()), tcp)
        .await
        .expect("TLS handshake with the B2BUA");
    let mut caller = Peer::new(tls);
    let to = "<sip:+4930123@127.0.0.1>";
    caller
        .send(&caller_request("TLS", "INVITE", 1, to, "z9hG4bKinv1"))
        .await;
    let ok = caller.final_response().await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        header(&ok, "Contact").contains(";transport=tls"),
        "Contact of the TLS leg: {ok}"
    );
    assert!(ok.contains("m=audio"), "the callee's SDP is relayed: {ok}");
    let to = header(&ok, "To").to_owned();
    caller
        .send(&caller_request("TLS", "ACK", 1, &to, "z9hG4bKack1"))
        .await;
    caller
        .send(&caller_request("TLS", "BYE", 2, &to, "z9hG4bKbye1"))
        .await;
    let bye_ok = caller.final_response().await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    assert_eq!(header(&bye_ok, "CSeq"), "2 BYE");
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
}

#[tokio::test]
async fn udp_caller_to_tls_callee_without_retransmissions() {
    let (server, client) = tls_pair(loopback_san());
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let target = SipTarget::parse(&format!(
        "sip:callee@{};transport=tls",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let callee = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .expect("TLS handshake with the B2BUA");
        let mut peer = Peer::new(tls);
        let invite = peer.recv().await;
        // Longer than T1 and 2*T1: over UDP the INVITE would have come again.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        peer.send(&answer(&invite, "200 OK", true)).await;
        let ack = peer.recv().await;
        let bye = peer.recv().await;
        peer.send(&answer(&bye, "200 OK", false)).await;
        (invite, ack, bye)
    });
    let b = b2bua_with(vec![target], Duration::from_secs(10), |c| {
        c.tls_client = Some(client)
    })
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    let (invite, ack, bye) = tokio::time::timeout(WAIT, callee)
        .await
        .expect("callee finished")
        .unwrap();
    assert!(invite.starts_with("INVITE "), "{invite}");
    assert!(
        header(&invite, "Via").starts_with("SIP/2.0/TLS "),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact").contains(";transport=tls"),
        "{invite}"
    );
    assert!(
        ack.starts_with("ACK "),
        "the INVITE must not be retransmitted over TLS: {ack}"
    );
    assert!(bye.starts_with("BYE "), "{bye}");
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
}

#[tokio::test]
async fn tls_callee_with_the_wrong_name_fails_over_to_udp() {
    let (server, client) = tls_pair(SanType::DnsName("gw.example.net".try_into().unwrap()));
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let wrong = SipTarget::parse(&format!(
        "sip:callee@{};transport=tls",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let handshakes = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .is_ok()
    });
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua_with(vec![wrong, second.target()], Duration::from_secs(10), |c| {
        c.tls_client = Some(client)
    })
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    second.succeeded().await;
    assert!(
        !tokio::time::timeout(WAIT, handshakes)
            .await
            .unwrap()
            .unwrap(),
        "the B2BUA must refuse a certificate that does not name the target"
    );
    let r = record(&b).await;
    match outcomes(&r).as_slice() {
        [Outcome::TransportError { detail }, Outcome::Answered] => {
            assert!(detail.contains("certificate"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

struct NobodyFromLoopback;

impl Admission for NobodyFromLoopback {
    fn admit(&self, source: SocketAddr) -> bool {
        !source.ip().is_loopback()
    }
}

#[tokio::test]
async fn connection_from_a_source_not_admitted_is_closed_without_an_answer() {
    let b = b2bua_with(vec![], Duration::from_secs(1), |c| {
        with_tcp(c);
        c.admission = Some(Arc::new(NobodyFromLoopback));
    })
    .await;
    let mut peer = Peer::new(TcpStream::connect(b.tcp_addr().unwrap()).await.unwrap());
    // The write may already fail: the B2BUA closed the connection on accept.
    let _ = peer.io.write_all(options("TCP", 1).as_bytes()).await;
    let got = peer.until_closed().await;
    assert!(
        got.is_empty(),
        "not admitted, yet answered: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn broken_stream_gets_400_and_is_closed() {
    let b = b2bua_with(vec![], Duration::from_secs(1), with_tcp).await;
    let addr = b.tcp_addr().unwrap();
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.send(
        "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKbad1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n\
         Call-ID: broken@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: banana\r\n\r\n",
    )
    .await;
    let got = String::from_utf8_lossy(&peer.until_closed().await).into_owned();
    assert!(got.starts_with("SIP/2.0 400 "), "{got}");
    assert!(
        got.contains("Warning:"),
        "the 400 says what is wrong: {got}"
    );

    // Bytes that never form a message: closed once the buffer bound is reached.
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    let junk = vec![b'x'; 200 * 1024];
    let _ = peer.io.write_all(&junk).await; // fails once the B2BUA closes
    let got = peer.until_closed().await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));

    // The B2BUA still serves other connections.
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.send(&options("TCP", 2)).await;
    assert!(peer.recv().await.starts_with("SIP/2.0 200"));
}

#[tokio::test]
async fn idle_connections_are_bounded_in_number_and_time() {
    let limits = StreamLimits {
        max_connections: 3,
        idle_timeout: Duration::from_secs(4),
        ..StreamLimits::default()
    };
    let b = b2bua_with(vec![], Duration::from_secs(1), |c| {
        with_tcp(c);
        c.streams = limits;
    })
    .await;
    let addr = b.tcp_addr().unwrap();
    let mut open = Vec::new();
    for n in 0..3 {
        let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
        peer.send(&options("TCP", n)).await;
        let ok = peer.recv().await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        open.push(peer);
    }
    // One more than the bound: closed at once, nothing answered.
    let mut extra = Peer::new(TcpStream::connect(addr).await.unwrap());
    let _ = extra.io.write_all(options("TCP", 9).as_bytes()).await;
    assert!(extra.until_closed().await.is_empty());
    // The idle ones are closed by the B2BUA.
    for peer in &mut open {
        assert!(peer.until_closed().await.is_empty());
    }
    // Their places are free again.
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.send(&options("TCP", 10)).await;
    assert!(peer.recv().await.starts_with("SIP/2.0 200"));
}

#[tokio::test]
async fn calls_to_one_tcp_target_share_one_connection() {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let target = SipTarget::parse(&format!(
        "sip:callee@{};transport=tcp",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    // Accepts one connection only: a second call on a new connection would
    // never be answered.
    let callee = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut peer = Peer::new(tcp);
        let mut call_ids = Vec::new();
        for _ in 0..2 {
            let invite = peer.recv().await;
            assert!(invite.starts_with("INVITE "), "{invite}");
            assert!(
                header(&invite, "Via").starts_with("SIP/2.0/TCP "),
                "{invite}"
            );
            peer.send(&answer(&invite, "200 OK", true)).await;
            let ack = peer.recv().await;
            assert!(ack.starts_with("ACK "), "{ack}");
            let bye = peer.recv().await;
            assert!(bye.starts_with("BYE "), "{bye}");
            peer.send(&answer(&bye, "200 OK", false)).await;
            call_ids.push(header(&invite, "Call-ID").to_owned());
        }
        call_ids
    });
    let b = b2bua(vec![target], Duration::from_secs(10)).await;
    for _ in 0..2 {
        let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
        caller.succeeded().await;
    }
    let call_ids = tokio::time::timeout(WAIT, callee)
        .await
        .expect("callee finished")
        .unwrap();
    assert_ne!(call_ids[0], call_ids[1]);
    for _ in 0..100 {
        if b.records().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = b.records();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.final_status == Some(200)));
}

#[tokio::test]
async fn caller_connection_closed_while_ringing_cancels_the_attempt() {
    let callee = spawn_sipp_tcp("uas_ringing.xml", None, &[]);
    settle().await;
    let b = b2bua_with(vec![callee.tcp_target()], Duration::from_secs(10), with_tcp).await;
    let mut caller = Peer::new(TcpStream::connect(b.tcp_addr().unwrap()).await.unwrap());
    let to = "<sip:+4930123@127.0.0.1>";
    caller
        .send(&caller_request("TCP", "INVITE", 1, to, "z9hG4bKinv2"))
        .await;
    loop {
        let msg = caller.recv().await;
        assert!(msg.starts_with("SIP/2.0 1"), "{msg}");
        if msg.starts_with("SIP/2.0 180") {
            break;
        }
    }
    drop(caller);
    // The callee scenario only succeeds when it got the CANCEL.
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(487));
    assert!(
        matches!(outcomes(&r).as_slice(), [Outcome::Cancelled]),
        "{r:?}"
    );
}
