//! End to end on loopback: `dial` → `provider-gateway` → SIPp callee (the
//! phone network), with central running for real (its own CA, SQLite),
//! real certificates enrolled with one-time tokens, real processes. The
//! call lands in central's ledger and in the settlement report.

mod common;

use std::time::Duration;

use common::network::{dial, start_gateway, Network};
use common::*;
use provider_sdk::media::wav;

const NUMBER: &str = "+441632960001";

/// A 1 kHz tone, 8 kHz mono.
fn tone(path: &std::path::Path, secs: f64) {
    let n = (secs * 8000.0) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
        })
        .collect();
    wav::write_wav(path, &samples).expect("write tone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_provider_carries_the_call_and_the_ledger_settles_it() {
    let net = Network::start().await;
    // The phone network behind both gateways: SIPp answering with RTP echo.
    let callee_a = spawn_sipp_with("uas_answer.xml", None, &["-rtp_echo"]);
    let callee_b = spawn_sipp_with("uas_answer.xml", None, &["-rtp_echo"]);
    let (port_a, port_b) = (free_port(), free_port());
    let a = net.register("carrier-a", port_a).await;
    let b = net.register("carrier-b", port_b).await;
    let payer = net.register("home-dialer", free_port()).await;
    let gw_a = start_gateway(
        &net.gateway_config(
            "carrier-a",
            port_a,
            callee_a.target().port(),
            "44,0.0200,0,60,60,,UK\n",
        ),
        Some(&a.token),
    )
    .await;
    let gw_b = start_gateway(
        &net.gateway_config(
            "carrier-b",
            port_b,
            callee_b.target().port(),
            "44,0.0300,0,60,60,,UK\n4416,0.0100,0.0050,1,1,,UK geographic\n",
        ),
        Some(&b.token),
    )
    .await;
    net.wait_routes(NUMBER, &["carrier-a", "carrier-b"]).await;

    let dialer = net.dialer_config("home-dialer", "+4930123456");
    let play = net.path("tone.wav");
    tone(&play, 1.0);
    let record = net.path("heard.wav");
    let (code, report, stderr) = dial(
        &dialer,
        Some(&payer.token),
        &[
            "--play",
            play.to_str().unwrap(),
            "--record",
            record.to_str().unwrap(),
            "--duration",
            "3",
            NUMBER,
        ],
    )
    .await;
    assert_eq!(code, 0, "dial failed: {report:#}\n{stderr}");

    // The decision: both candidates, carrier-b's own longest prefix (4416)
    // is the cheapest, so it is chosen; carrier-a is the fallback.
    let candidates = report["decision"]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2, "{report:#}");
    let chosen: Vec<&str> = candidates
        .iter()
        .filter(|c| c["rank"] == 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(chosen, ["carrier-b"], "{report:#}");
    let b_row = candidates
        .iter()
        .find(|c| c["name"] == "carrier-b")
        .unwrap();
    assert_eq!(b_row["prefix"], "4416");
    assert!(b_row["latency"].as_f64().is_some(), "probed: {b_row}");
    let answered = &report["answered"];
    assert_eq!(answered["provider"], "carrier-b", "{report:#}");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(answered["receipt_sent"], true);
    let secs = answered["duration_secs"].as_u64().unwrap();
    assert!((2..=5).contains(&secs), "duration {secs}");
    // 1/1 increments: billable = duration; cost = 0.005 + 0.01 * s / 60.
    assert_eq!(answered["billable_secs"].as_u64(), Some(secs));
    let expected_cost = rust_decimal::Decimal::new(5, 3)
        + rust_decimal::Decimal::new(1, 2) * rust_decimal::Decimal::from(secs)
            / rust_decimal::Decimal::from(60);
    let cost: rust_decimal::Decimal = answered["cost"].as_str().unwrap().parse().unwrap();
    assert_eq!(cost, expected_cost);

    // Media went through the gateway's relay to the SIPp echo and back.
    let media = &answered["media"];
    assert!(media["packets_sent"].as_u64().unwrap() > 50, "{media}");
    assert!(media["packets_received"].as_u64().unwrap() > 50, "{media}");
    let heard = wav::read_wav(&record).expect("recording");
    assert!(heard.len() > 8000, "recorded {} samples", heard.len());

    // Central's ledger: one agreed ticket, the same amount.
    let row = net.wait_settlement(payer.id, b.id, 1).await;
    let amount: rust_decimal::Decimal = row["amount"].as_str().unwrap().parse().unwrap();
    assert_eq!(amount, expected_cost, "{row}");
    assert_eq!(row["disputed_tickets"].as_u64(), Some(0), "{row}");

    callee_b.succeeded().await;
    gw_a.stop().await;
    gw_b.stop().await;
    drop(callee_a);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_passed_over_for_the_next() {
    let net = Network::start().await;
    let failing = spawn_sipp("uas_unavailable.xml", None);
    let answering = spawn_sipp_with("uas_answer.xml", None, &["-rtp_echo"]);
    let (port_a, port_b) = (free_port(), free_port());
    let cheap = net.register("cheap-but-failing", port_a).await;
    let dear = net.register("dear-but-working", port_b).await;
    let payer = net.register("home-dialer", free_port()).await;
    let gw_a = start_gateway(
        &net.gateway_config(
            "cheap-but-failing",
            port_a,
            failing.target().port(),
            "44,0.01,0,1,1,,\n",
        ),
        Some(&cheap.token),
    )
    .await;
    let gw_b = start_gateway(
        &net.gateway_config(
            "dear-but-working",
            port_b,
            answering.target().port(),
            "44,0.05,0,1,1,,\n",
        ),
        Some(&dear.token),
    )
    .await;
    net.wait_routes(NUMBER, &["cheap-but-failing", "dear-but-working"])
        .await;
    let dialer = net.dialer_config("home-dialer", "+4930123456");
    let (code, report, stderr) =
        dial(&dialer, Some(&payer.token), &["--duration", "1", NUMBER]).await;
    assert_eq!(code, 0, "dial failed: {report:#}\n{stderr}");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{report:#}");
    assert_eq!(attempts[0]["provider"], "cheap-but-failing");
    assert_eq!(attempts[0]["status"], 503, "{report:#}");
    assert_eq!(attempts[1]["provider"], "dear-but-working");
    assert_eq!(report["answered"]["provider"], "dear-but-working");
    // Only the answered call is owed; the failed attempt's ticket is not settled.
    net.wait_settlement(payer.id, dear.id, 1).await;
    let all = net.settlements().await;
    assert!(
        !all["settlements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["provider_id"].as_u64() == Some(cheap.id)),
        "{all}"
    );
    failing.succeeded().await;
    answering.succeeded().await;
    gw_a.stop().await;
    gw_b.stop().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_without_a_valid_ticket_is_refused_with_the_reason() {
    let net = Network::start().await;
    let callee = spawn_sipp("uas_answer.xml", None);
    let port = free_port();
    let gw = net.register("carrier-a", port).await;
    let process = start_gateway(
        &net.gateway_config(
            "carrier-a",
            port,
            callee.target().port(),
            "44,0.01,0,1,1,,\n",
        ),
        Some(&gw.token),
    )
    .await;
    // SIPp as a caller without any ticket: 403 with a Warning.
    let caller = spawn_sipp_with(
        "uac_expect_403.xml",
        Some(format!("127.0.0.1:{port}").parse().unwrap()),
        &[],
    );
    caller.succeeded().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        process.log_text().contains("call refused"),
        "{}",
        process.log_text()
    );
    process.stop().await;
    drop(callee);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_wait_in_the_spool_while_central_is_unreachable_even_across_a_restart() {
    let net = Network::start().await;
    let callee = spawn_sipp_with("uas_answer.xml", None, &["-rtp_echo"]);
    let port = free_port();
    let carrier = net.register("carrier-a", port).await;
    let payer = net.register("home-dialer", free_port()).await;
    let mut link = common::network::Cuttable::new(&net.base).await;
    let config = net.gateway_config(
        "carrier-a",
        port,
        callee.target().port(),
        "44,0.01,0,1,1,,\n",
    );
    // The gateway reaches central only through the cuttable link.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&net.base, &link.url());
    std::fs::write(&config, text).unwrap();
    let gateway = start_gateway(&config, Some(&carrier.token)).await;
    net.wait_routes(NUMBER, &["carrier-a"]).await;
    let dialer = net.dialer_config("home-dialer", "+4930123456");
    let dial_task = {
        let dialer = dialer.clone();
        let token = payer.token.clone();
        tokio::spawn(async move { dial(&dialer, Some(&token), &["--duration", "3", NUMBER]).await })
    };
    // Cut the gateway off from central while the call is up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    link.cut();
    let (code, report, stderr) = dial_task.await.unwrap();
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let spool = net.path("carrier-a").join("spool");
    let queued = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queued(&spool) == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing was spooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.stop().await;
    assert_eq!(queued(&spool), 1, "the ticket waits on disk");
    assert!(
        net.settlements().await["settlements"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing reached central yet"
    );
    // Back up, restarted: the spooled ticket reaches the ledger exactly once.
    link.restore().await;
    let gateway = start_gateway(&config, None).await;
    let row = net.wait_settlement(payer.id, carrier.id, 1).await;
    assert_eq!(row["tickets"], 1, "{row}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queued(&spool) != 0 {
        assert!(std::time::Instant::now() < deadline, "spool not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    callee.succeeded().await;
    gateway.stop().await;
    net.shutdown().await;
}
