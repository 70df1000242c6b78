//! The gateway's `/health` and `/metrics`, its demo knobs, and the dialer's
//! callee and direct modes, end to end on loopback with central running:
//! `dial` → a gateway that refuses every call (`demo.reject_calls`) → the
//! next, delayed gateway (`demo.sip_delay_ms`) → `dial answer`'s callee.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::network::{dial, start_gateway_in_process, Network};
use common::*;
use provider_sdk::dialer::answer::{AnswerConfig, AnsweredCallReport, Answerer};
use provider_sdk::dialer::direct::{self, DirectRequest};
use provider_sdk::media::wav;
use tokio_util::sync::CancellationToken;

const NUMBER: &str = "+441632960001";

fn append(path: &std::path::Path, text: &str) {
    let mut config = std::fs::read_to_string(path).expect("read config");
    config.push_str(text);
    std::fs::write(path, config).expect("write config");
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET");
    (res.status().as_u16(), res.text().await.expect("body"))
}

/// The value of one sample line (`name{labels} value`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_refusals_verifications_answers_and_ledger_submissions() {
    let net = Network::start().await;
    let stop = CancellationToken::new();
    let (calls_tx, mut calls_rx) = tokio::sync::mpsc::unbounded_channel::<AnsweredCallReport>();
    let callee = Answerer::bind(AnswerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        media_ip: std::net::Ipv4Addr::LOCALHOST,
        play: None,
        record_dir: Some(net.path("recordings")),
        max_call: Duration::from_secs(60),
    })
    .await
    .expect("callee");
    let callee_port = callee.local_addr().port();
    let callee_task = tokio::spawn(callee.run(stop.clone(), move |c| {
        let _ = calls_tx.send(c);
    }));

    let (port_a, port_b) = (free_port(), free_port());
    let a = net.register("carrier-a", port_a).await;
    let b = net.register("carrier-b", port_b).await;
    let payer = net.register("home-dialer", free_port()).await;
    // carrier-a is cheaper but refuses every call; carrier-b is 40 ms away.
    let config_a = net.gateway_config("carrier-a", port_a, callee_port, "44,0.0100,0,1,1,,UK\n");
    append(
        &config_a,
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[demo]\nreject_calls = 503\n",
    );
    let config_b = net.gateway_config("carrier-b", port_b, callee_port, "44,0.0200,0,1,1,,UK\n");
    append(
        &config_b,
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[demo]\nsip_delay_ms = 40\n",
    );
    let gw_a = start_gateway_in_process(&config_a, Some(&a.token)).await;
    let gw_b = start_gateway_in_process(&config_b, Some(&b.token)).await;
    assert_eq!(
        gw_b.sip_addr().port(),
        port_b,
        "the relay takes the registered port"
    );
    let (metrics_a, metrics_b) = (gw_a.metrics_addr().unwrap(), gw_b.metrics_addr().unwrap());
    net.wait_routes(NUMBER, &["carrier-a", "carrier-b"]).await;

    let (status, body) = get(metrics_b, "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider_id"].as_u64(), Some(b.id));
    assert_eq!(get(metrics_b, "/nothing").await.0, 404);

    let dialer = net.dialer_config("home-dialer", "+4930123456");
    let (code, report, stderr) =
        dial(&dialer, Some(&payer.token), &["--duration", "2", NUMBER]).await;
    assert_eq!(code, 0, "dial failed: {report:#}\n{stderr}");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{report:#}");
    assert_eq!(attempts[0]["provider"], "carrier-a");
    assert_eq!(attempts[0]["status"], 503, "{report:#}");
    assert_eq!(report["answered"]["provider"], "carrier-b", "{report:#}");
    // The relay holds each datagram 40 ms each way: the probe's round trip
    // cannot be shorter than 80 ms (a lower bound, not a timing).
    let b_row = report["decision"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "carrier-b")
        .cloned()
        .unwrap();
    assert!(b_row["latency"].as_f64().unwrap() >= 80.0, "{b_row}");

    // The callee answered it and kept what it heard (the dialer's silence).
    let heard = tokio::time::timeout(Duration::from_secs(20), calls_rx.recv())
        .await
        .expect("the callee saw the call end")
        .expect("a call");
    assert_eq!(heard.number, NUMBER);
    assert_eq!(heard.ended_by, "caller");
    let media = heard.media.expect("media");
    assert!(media.packets_received > 20, "{media:?}");
    let recording = media.recording.expect("recorded");
    assert!(
        wav::read_wav(std::path::Path::new(&recording))
            .unwrap()
            .len()
            > 4000
    );

    // A call without a ticket, straight to carrier-b: refused with 403.
    let direct = direct::call(
        &DirectRequest {
            number: NUMBER.parse().unwrap(),
            via: gw_b.sip_addr(),
            from: "+15550100".parse().unwrap(),
            play: None,
            record: None,
            duration: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(10),
        },
        CancellationToken::new(),
    )
    .await
    .expect("direct call tried");
    assert!(!direct.succeeded());
    assert_eq!(direct.failed_status, Some(403), "{}", direct.render());

    let (_, text_a) = get(metrics_a, "/metrics").await;
    assert_eq!(
        sample(&text_a, "provider_gateway_calls_offered_total"),
        1.0,
        "{text_a}"
    );
    assert_eq!(
        sample(
            &text_a,
            "provider_gateway_calls_refused_total{reason=\"demo_reject\"}"
        ),
        1.0,
        "{text_a}"
    );
    assert_eq!(
        sample(
            &text_a,
            "provider_gateway_ticket_verifications_total{outcome=\"valid\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&text_a, "provider_gateway_calls_answered_total"),
        0.0
    );

    // carrier-b: two offered, one refused for want of a ticket, one answered
    // and its ticket and receipts delivered to central.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text_b = loop {
        let (status, text) = get(metrics_b, "/metrics").await;
        assert_eq!(status, 200);
        if sample(&text, "provider_gateway_ledger_sent_total") >= 1.0 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing delivered:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&text_b, "provider_gateway_calls_offered_total"),
        2.0,
        "{text_b}"
    );
    assert_eq!(
        sample(
            &text_b,
            "provider_gateway_calls_refused_total{reason=\"no_ticket\"}"
        ),
        1.0,
        "{text_b}"
    );
    assert_eq!(
        sample(&text_b, "provider_gateway_calls_answered_total"),
        1.0
    );
    assert_eq!(
        sample(
            &text_b,
            "provider_gateway_ticket_verifications_total{outcome=\"valid\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text_b,
            "provider_gateway_receipts_total{outcome=\"countersigned\"}"
        ),
        1.0,
        "{text_b}"
    );
    assert_eq!(sample(&text_b, "provider_gateway_active_calls"), 0.0);
    assert_eq!(sample(&text_b, "provider_gateway_ledger_queued"), 0.0);
    net.wait_settlement(payer.id, b.id, 1).await;

    stop.cancel();
    callee_task.await.expect("join").expect("callee ran");
    gw_a.shutdown().await;
    gw_b.shutdown().await;
    net.shutdown().await;
}
