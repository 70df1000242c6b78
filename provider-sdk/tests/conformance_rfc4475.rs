//! Black-box conformance run over the RFC 4475 torture messages: each one is
//! sent over UDP and over TCP to a running listener on loopback; the answer
//! (or the silence) must match the corpus manifest, and the listener must
//! still answer OPTIONS on both transports afterwards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use provider_sdk::sip::listener::{Listener, ListenerConfig, Responder};
use provider_sdk::sip::{validate, Policy, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long to wait for an answer that must come (generous: shared machine).
const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// How long silence must last to count as "dropped".
const SILENCE_WAIT: Duration = Duration::from_millis(1500);

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/rfc4475"),
    };
    dir.join("manifest.tsv").is_file().then_some(dir)
}

#[derive(Debug, Clone)]
struct Case {
    file: String,
    kind: String,
    verdict: String,
    bytes: Vec<u8>,
}

/// What the listener must do with one message.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// A response with one of these statuses.
    Status(Vec<u16>),
    /// Any final answer except 400 (well-formed request handled normally).
    NotBadRequest,
    /// No answer at all.
    Silence,
    /// This status when the request names a Via to answer to, silence otherwise.
    StatusIfAnswerable(u16),
}

fn expectation(case: &Case) -> Expect {
    let has_via = case.bytes.split(|&b| b == b'\n').any(|l| {
        l.len() > 4 && (l[..4].eq_ignore_ascii_case(b"via:") || l[..2].eq_ignore_ascii_case(b"v:"))
    });
    if case.kind == "response" {
        return Expect::Silence;
    }
    let specific = match case.file.as_str() {
        "TC_INTMETH.dat" | "TC_ESC02_V.dat" => Some(vec![405, 501]),
        "TC_BADVERS_V.dat" => Some(vec![505]),
        "TC_INSUF_I.dat" | "TC_MULTI01_I.dat" | "TC_MCL01_I.dat" => Some(vec![400]),
        "TC_UNKSCM_V.dat" | "TC_NOVELSC_V.dat" => Some(vec![416]),
        "TC_BEXT01_V.dat" => Some(vec![420]),
        "TC_INVUT_V.dat" => Some(vec![415]),
        "TC_SDP01_V.dat" => Some(vec![406]),
        "TC_REGAUT01_V.dat" => Some(vec![401, 403, 405]),
        "TC_ZEROMF_V.dat" => Some(vec![200, 483]),
        "TC_CPARAM01_V.dat" | "TC_CPARAM02_V.dat" | "TC_REGESCRT_V.dat" => Some(vec![405]),
        _ => None,
    };
    match (case.verdict.as_str(), specific) {
        ("reject", Some(s)) => Expect::StatusIfAnswerable(s[0]),
        ("reject", None) => Expect::StatusIfAnswerable(400),
        (_, Some(s)) => Expect::Status(s),
        ("parse", None) | ("semantic", None) => Expect::NotBadRequest,
        (other, None) => panic!("{}: unknown verdict {other:?} in manifest", case.file),
    }
    .pipe(|e| match e {
        Expect::StatusIfAnswerable(s) if !has_via => {
            let _ = s;
            Expect::Silence
        }
        e => e,
    })
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

fn load_cases(dir: &std::path::Path) -> Vec<Case> {
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).expect("read manifest.tsv");
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 4, "bad manifest line: {l}");
            let bytes = std::fs::read(dir.join(cols[0]))
                .unwrap_or_else(|e| panic!("read {}: {e}", cols[0]));
            Case {
                file: cols[0].to_owned(),
                kind: cols[2].to_owned(),
                verdict: cols[3].to_owned(),
                bytes,
            }
        })
        .collect()
}

/// Status code of the first response in `bytes`, if any.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line = bytes.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

async fn over_udp(target: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    sock.send_to(bytes, target).await.expect("send udp");
    let mut buf = vec![0u8; 70_000];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        Ok(Err(e)) => panic!("udp receive failed: {e}"),
        Err(_) => None,
    }
}

/// Sends the message, half-closes, and reads until the listener closes (or `wait`).
async fn over_tcp(target: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(target).await.expect("connect tcp");
    stream.write_all(bytes).await.expect("write tcp");
    stream.shutdown().await.expect("half-close tcp");
    let mut out = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    match read {
        Ok(Ok(_)) | Err(_) => (!out.is_empty()).then_some(out),
        Ok(Err(e)) => panic!("tcp read failed: {e}"),
    }
}

fn check(
    case: &Case,
    transport: &str,
    expect: &Expect,
    answer: Option<&[u8]>,
) -> Result<(), String> {
    let status = answer.map(|a| {
        status_of(a).ok_or_else(|| format!("unreadable answer {:?}", String::from_utf8_lossy(a)))
    });
    let status = status.transpose()?;
    eprintln!(
        "{:<22} {transport}: {status:?} (expected {expect:?})",
        case.file
    );
    let ok = match (expect, status) {
        (Expect::Silence, None) => true,
        (Expect::Status(s), Some(got)) => s.contains(&got),
        (Expect::NotBadRequest, Some(got)) => got != 400 && got >= 200,
        (Expect::StatusIfAnswerable(s), Some(got)) => *s == got,
        _ => false,
    };
    // Statuses that RFC 3261 pairs with a header must carry it.
    let required = match status {
        Some(400) => Some("\r\nWarning: 399 "),
        Some(420) => Some("\r\nUnsupported: "),
        Some(415) | Some(406) => Some("\r\nAccept: "),
        Some(405) | Some(501) => Some("\r\nAllow: "),
        _ => None,
    };
    if let (Some(header), Some(a)) = (required, answer) {
        if !String::from_utf8_lossy(a).contains(header) {
            return Err(format!(
                "{} over {transport}: answer lacks {header:?}",
                case.file
            ));
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} over {transport}: expected {expect:?}, got {status:?}",
            case.file
        ))
    }
}

async fn options_answered(listener: &Listener) {
    let options = b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKalive\r\nMax-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: alive@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let udp = over_udp(listener.udp_addr(), options, ANSWER_WAIT).await;
    assert_eq!(
        udp.as_deref().and_then(status_of),
        Some(200),
        "listener no longer answers OPTIONS over UDP"
    );
    let tcp = over_tcp(listener.tcp_addr(), options, ANSWER_WAIT).await;
    assert_eq!(
        tcp.as_deref().and_then(status_of),
        Some(200),
        "listener no longer answers OPTIONS over TCP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_messages_get_the_manifest_verdict_over_udp_and_tcp() {
    let Some(dir) = corpus_dir() else {
        eprintln!("\n*** SKIPPED: RFC 4475 corpus not found (set CONFORMANCE_DIR or provide ../shared/conformance/rfc4475) ***\n");
        return;
    };
    let cases = load_cases(&dir);
    assert!(
        cases.len() >= 50,
        "manifest lists only {} messages",
        cases.len()
    );
    let listener = Listener::bind(ListenerConfig::loopback(), Responder)
        .await
        .expect("bind listener");
    options_answered(&listener).await;

    let runs = cases.iter().map(|case| {
        let expect = expectation(case);
        let wait = if expect == Expect::Silence {
            SILENCE_WAIT
        } else {
            ANSWER_WAIT
        };
        let (udp_addr, tcp_addr) = (listener.udp_addr(), listener.tcp_addr());
        async move {
            let udp = over_udp(udp_addr, &case.bytes, wait).await;
            let tcp = over_tcp(tcp_addr, &case.bytes, wait).await;
            let mut errors = Vec::new();
            errors.extend(check(case, "UDP", &expect, udp.as_deref()).err());
            errors.extend(check(case, "TCP", &expect, tcp.as_deref()).err());
            errors
        }
    });
    let failures: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    options_answered(&listener).await;
    let stats = listener.stats();
    assert!(
        stats.rejected > 0 && stats.dropped > 0 && stats.requests > 0,
        "{stats:?}"
    );
}

/// Responses are never answered, so the black-box run cannot tell "handled"
/// from "dropped"; the verdict is checked directly.
#[test]
fn torture_responses_are_accepted_or_dropped_as_the_manifest_says() {
    let Some(dir) = corpus_dir() else {
        eprintln!("\n*** SKIPPED: RFC 4475 corpus not found (set CONFORMANCE_DIR or provide ../shared/conformance/rfc4475) ***\n");
        return;
    };
    let policy = Policy::default();
    let mut seen = 0;
    for case in load_cases(&dir).iter().filter(|c| c.kind == "response") {
        seen += 1;
        let verdict = validate(&case.bytes, &policy);
        match (case.verdict.as_str(), &verdict) {
            ("parse", Verdict::Response(_)) => {}
            ("reject" | "semantic", Verdict::Drop(_)) => {}
            (v, got) => panic!("{}: manifest says {v}, validation gave {got:?}", case.file),
        }
    }
    assert!(seen >= 5, "only {seen} responses in the corpus");
}
