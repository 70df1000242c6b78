//! The forwarder end to end on loopback: SIPp as the upstream carrier →
//! `forwarder serve` → provider gateways with different prices → SIPp as
//! the phone network, with central running for real (its CA, SQLite).
//! Each test checks the CDR, the charge and the balance, and where a call
//! was answered, the ticket in central's settlement report.

mod harness;

use harness::network::{start_gateway_in_process, Network};
use harness::*;
use rust_decimal::Decimal;
use serde_json::Value;

const SUBSCRIBER_NUMBER: &str = "+4930111111";
const TARGET: &str = "+441632960001";

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

struct World {
    net: Network,
    home_id: u64,
    forwarder: Forwarder,
    gateways: Vec<(u64, provider_sdk::gateway::Gateway)>,
    callees: Vec<Sipp>,
}

/// Central, one gateway per `(name, deck, callee scenario)`, and the forwarder.
async fn world(providers: &[(&str, &str, &str)]) -> World {
    let net = Network::start().await;
    let mut gateways = Vec::new();
    let mut callees = Vec::new();
    for (name, deck, scenario) in providers {
        let callee = spawn_sipp_with(scenario, None, &["-rtp_echo"]);
        let port = free_port();
        let reg = net.register(name, port).await;
        let config = net.gateway_config(name, port, callee.target().port(), deck);
        gateways.push((
            reg.id,
            start_gateway_in_process(&config, Some(&reg.token)).await,
        ));
        callees.push(callee);
    }
    let names: Vec<&str> = providers.iter().map(|p| p.0).collect();
    net.wait_routes(TARGET, &names).await;
    let home = net.register("home-telecom", free_port()).await;
    let data = net.path("forwarder");
    Forwarder::init(
        &data,
        &ForwarderSetup {
            central_url: &net.base,
            central_root: &net.path("ca.crt"),
            name: "home-telecom",
            token: Some(&home.token),
            extra: "",
            cache_ttl_secs: 300,
        },
    );
    let forwarder = Forwarder::serve(&data, Some(&home.token)).await;
    forwarder.enrolled().await;
    World {
        net,
        home_id: home.id,
        forwarder,
        gateways,
        callees,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_is_forwarded_through_the_cheapest_provider_and_billed() {
    let w = world(&[
        ("carrier-a", "44,0.0200,0,1,1,,\n", "uas_answer.xml"),
        ("carrier-b", "44,0.0100,0,1,1,,\n", "uas_answer.xml"),
        ("carrier-c", "44,0.0300,0,1,1,,\n", "uas_answer.xml"),
    ])
    .await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;

    let cdrs = w.forwarder.closed_cdrs(sub, 1).await;
    let cdr = &cdrs[0];
    assert_eq!(cdr["status"], "completed", "{cdr:#}");
    assert_eq!(cdr["sip_status"], 200);
    assert_eq!(
        cdr["provider_name"], "carrier-b",
        "cheapest chosen: {cdr:#}"
    );
    assert_eq!(cdr["target"], TARGET);
    assert_eq!(cdr["called_number"], SUBSCRIBER_NUMBER);
    // The decision keeps every candidate with its scores.
    let candidates = cdr["decision"]["targets"][0]["decision"]["candidates"]
        .as_array()
        .expect("candidates");
    assert_eq!(candidates.len(), 3, "{cdr:#}");
    assert_eq!(cdr["attempts"].as_array().unwrap().len(), 1);
    // Billed: 1/1 increments, the provider's 0.01/min plus 20 %.
    let secs = cdr["billable_seconds"].as_u64().unwrap();
    assert!((2..=6).contains(&secs), "billable {secs}");
    let cost = Decimal::new(1, 2) * Decimal::from(secs) / Decimal::from(60);
    let price = (cost * Decimal::new(12, 1)).round_dp(2);
    assert_eq!(dec(&cdr["rating"]["price"]), price, "{cdr:#}");
    assert_eq!(dec(&cdr["rating"]["provider_cost"]), cost.round_dp(2));
    let account = w.forwarder.cli(&["account", "show", &sub.to_string()]);
    assert_eq!(
        dec(&account["standing"]["balance"]),
        Decimal::new(1000, 2) - price,
        "{account:#}"
    );
    // Media flowed through the forwarder's relay both ways.
    assert!(
        cdr["media_stats"]["caller"]["packets"].as_u64().unwrap() > 10,
        "{cdr:#}"
    );

    // The provider settled the ticket with central: payer = the forwarder.
    let b_id = w.gateways[1].0;
    let row = w.net.wait_settlement(w.home_id, b_id, 1).await;
    assert_eq!(row["billable_seconds"].as_u64(), Some(secs), "{row}");
    assert_eq!(cdr["ticket_id"].as_str().map(str::len), Some(36));
    w.forwarder.stop().await;
    for (_, g) in w.gateways {
        g.shutdown().await;
    }
    drop(w.callees);
    w.net.shutdown().await;
}
