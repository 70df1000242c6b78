//! The forwarder end to end on loopback: SIPp as the upstream carrier →
//! `forwarder serve` → provider gateways with different prices → SIPp as
//! the phone network, with central running for real (its CA, SQLite).
//! Each test checks the CDR, the charge and the balance, and where a call
//! was answered, the ticket in central's settlement report.

mod harness;

use harness::network::{start_gateway_in_process, Network};
use harness::*;
use std::time::Duration;

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
    world_with(providers, &[], 300).await
}

/// Like [`world`], with extra SIPp arguments for the callees and the
/// forwarder's route-cache TTL.
async fn world_with(providers: &[(&str, &str, &str)], callee_args: &[&str], ttl: u64) -> World {
    let net = Network::start().await;
    let mut gateways = Vec::new();
    let mut callees = Vec::new();
    for (name, deck, scenario) in providers {
        let mut args = vec!["-rtp_echo"];
        args.extend_from_slice(callee_args);
        let callee = spawn_sipp_with(scenario, None, &args);
        let port = free_port();
        let reg = net.register(name, port).await;
        let config = net.gateway_config(name, port, callee.target().port(), deck);
        gateways.push((
            reg.id,
            start_gateway_in_process(&config, Some(&reg.token)).await,
        ));
        callees.push(callee);
    }
    // Central answers for TARGET with every provider whose deck covers it.
    let digits = TARGET.trim_start_matches('+');
    let names: Vec<&str> = providers
        .iter()
        .filter(|p| {
            p.1.split(',')
                .next()
                .is_some_and(|prefix| digits.starts_with(prefix))
        })
        .map(|p| p.0)
        .collect();
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
            cache_ttl_secs: ttl,
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
        ("carrier-a", "44,1.2000,0,1,1,,\n", "uas_answer.xml"),
        ("carrier-b", "44,0.6000,0,1,1,,\n", "uas_answer.xml"),
        ("carrier-c", "44,1.8000,0,1,1,,\n", "uas_answer.xml"),
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
    if std::env::var_os("PRINT_CDR").is_some() {
        println!("{cdr:#}");
    }
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
    // Billed: 1/1 increments, the provider's 0.60/min plus 20 %.
    let secs = cdr["billable_seconds"].as_u64().unwrap();
    assert!((2..=6).contains(&secs), "billable {secs}");
    let cost = Decimal::new(60, 2) * Decimal::from(secs) / Decimal::from(60);
    let price = (cost * Decimal::new(12, 1)).round_dp(2);
    assert!(price > Decimal::ZERO, "{cdr:#}");
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

impl World {
    async fn end(self) {
        self.forwarder.stop().await;
        for (_, g) in self.gateways {
            g.shutdown().await;
        }
        drop(self.callees);
        self.net.shutdown().await;
    }

    fn balance(&self, sub: i64) -> Decimal {
        let account = self.forwarder.cli(&["account", "show", &sub.to_string()]);
        dec(&account["standing"]["balance"])
    }
}

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_answering_503_is_passed_over_for_the_next() {
    let w = world(&[
        ("cheap-broken", "44,0.0100,0,1,1,,\n", "uas_unavailable.xml"),
        ("dearer", "44,0.0200,0,1,1,,\n", "uas_answer.xml"),
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
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    let attempts = cdr["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{cdr:#}");
    assert_eq!(attempts[0]["provider"], "cheap-broken");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[1]["provider"], "dearer");
    assert_eq!(cdr["provider_name"], "dearer");
    assert_eq!(cdr["status"], "completed");
    let price = dec(&cdr["rating"]["price"]);
    assert_eq!(w.balance(sub), Decimal::new(1000, 2) - price);
    w.net.wait_settlement(w.home_id, w.gateways[1].0, 1).await;
    // The call path's metrics tell the same story.
    let f = &w.forwarder;
    assert_eq!(f.metric("forwarder_calls_offered_total").await, 1.0);
    assert_eq!(f.metric("forwarder_calls_answered_total").await, 1.0);
    assert_eq!(
        f.metric(r#"forwarder_attempts_total{provider="cheap-broken",outcome="rejected"}"#)
            .await,
        1.0
    );
    assert_eq!(
        f.metric(r#"forwarder_attempts_total{provider="dearer",outcome="answered"}"#)
            .await,
        1.0
    );
    assert_eq!(
        f.metric(r#"forwarder_failovers_total{provider="cheap-broken"}"#)
            .await,
        1.0
    );
    assert_eq!(
        f.metric(r#"forwarder_route_lookups_total{result="central"}"#)
            .await,
        1.0
    );
    assert_eq!(
        f.metric("forwarder_post_dial_delay_seconds_count").await,
        1.0
    );
    assert_eq!(f.metric("forwarder_active_calls").await, 0.0);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_provider_fails_the_caller_gets_a_final_status_and_nothing_is_charged() {
    let w = world(&[
        ("one", "44,0.0100,0,1,1,,\n", "uas_unavailable.xml"),
        ("two", "44,0.0200,0,1,1,,\n", "uas_unavailable.xml"),
    ])
    .await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let heard = invite(w.forwarder.sip, SUBSCRIBER_NUMBER, LIMIT).await;
    assert_eq!(heard.status, 503, "{heard:?}");
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "failed", "{cdr:#}");
    assert_eq!(cdr["attempts"].as_array().unwrap().len(), 2);
    assert!(cdr["rating"].is_null(), "{cdr:#}");
    assert_eq!(w.balance(sub), Decimal::new(1000, 2));
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_is_the_callee_s_answer_and_is_relayed_without_failover() {
    let w = world(&[
        ("cheap", "44,0.0100,0,1,1,,\n", "uas_busy.xml"),
        ("dear", "44,0.0200,0,1,1,,\n", "uas_answer.xml"),
    ])
    .await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling(
        "uac_expect_486.xml",
        w.forwarder.sip,
        SUBSCRIBER_NUMBER,
        &[],
    );
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["sip_status"], 486, "{cdr:#}");
    assert_eq!(
        cdr["attempts"].as_array().unwrap().len(),
        1,
        "no failover after 486"
    );
    assert_eq!(w.balance(sub), Decimal::new(1000, 2));
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_during_ringing_ends_the_search_and_nothing_is_charged() {
    let w = world(&[("ringing", "44,0.0100,0,1,1,,\n", "uas_ringing.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_cancel.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "cancelled", "{cdr:#}");
    assert_eq!(cdr["sip_status"], 487);
    assert_eq!(w.balance(sub), Decimal::new(1000, 2));
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bye_from_the_callee_ends_and_bills_the_call() {
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_hangup.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_wait_bye.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "completed", "{cdr:#}");
    assert_eq!(cdr["hangup_cause"], "callee hung up", "{cdr:#}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn re_invites_for_hold_and_resume_reach_the_callee_through_forwarder_and_gateway() {
    let mut w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_hold_resume.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    // The caller's scenario fails unless both re-INVITEs are answered with
    // 200 (from the callee, two B2BUAs away); the callee's unless it gets
    // them and the BYE after.
    let caller = spawn_sipp_calling(
        "uac_hold_resume.xml",
        w.forwarder.sip,
        SUBSCRIBER_NUMBER,
        &[],
    );
    caller.succeeded().await;
    w.callees.remove(0).succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "completed", "{cdr:#}");
    assert_eq!(cdr["hangup_cause"], "caller hung up", "{cdr:#}");
    assert!(cdr["rating"].is_object(), "charged: {cdr:#}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_arriving_over_tcp_is_forwarded_and_billed() {
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    // SIPp over TCP to the forwarder's TCP listener (same port as UDP); the
    // provider leg stays UDP, as the provider registered it.
    let caller = spawn_sipp_calling(
        "uac_call.xml",
        w.forwarder.sip,
        SUBSCRIBER_NUMBER,
        &["-t", "t1"],
    );
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "completed", "{cdr:#}");
    assert_eq!(cdr["provider_name"], "carrier", "{cdr:#}");
    assert!(cdr["rating"].is_object(), "charged: {cdr:#}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_without_media_is_torn_down_by_the_media_timeout() {
    // Neither side sends RTP: the forwarder's relay times out (4 s here).
    let net = Network::start().await;
    let callee = spawn_sipp("uas_answer.xml", None);
    let port = free_port();
    let reg = net.register("carrier", port).await;
    let gw = start_gateway_in_process(
        &net.gateway_config("carrier", port, callee.target().port(), "44,0.01,0,1,1,,\n"),
        Some(&reg.token),
    )
    .await;
    net.wait_routes(TARGET, &["carrier"]).await;
    let home = net.register("home-telecom", free_port()).await;
    let data = net.path("forwarder");
    Forwarder::init(&data, &setup(&net, &home.token, ""));
    let forwarder = Forwarder::serve(&data, Some(&home.token)).await;
    forwarder.enrolled().await;
    let sub = subscriber(
        &data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_wait_bye.xml", forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &forwarder.closed_cdrs(sub, 1).await[0];
    assert!(
        cdr["hangup_cause"]
            .as_str()
            .unwrap_or_default()
            .starts_with("media timeout"),
        "{cdr:#}"
    );
    assert_eq!(cdr["status"], "completed");
    forwarder.stop().await;
    gw.shutdown().await;
    drop(callee);
    net.shutdown().await;
}

fn setup<'a>(net: &'a Network, token: &'a str, extra: &'a str) -> ForwarderSetup<'a> {
    ForwarderSetup {
        central_url: &net.base,
        central_root: Box::leak(Box::new(net.path("ca.crt"))),
        name: "home-telecom",
        token: Some(token),
        extra,
        cache_ttl_secs: 300,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_suspended_and_penniless_subscribers_are_refused_with_a_reason() {
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")]).await;
    let data = &w.forwarder.data;
    // Unknown number.
    let heard = invite(w.forwarder.sip, "+4930999999", LIMIT).await;
    assert_eq!(heard.status, 404, "{heard:?}");
    assert!(heard.header("Reason").is_some(), "{heard:?}");
    // No funds (prepaid, nothing paid in).
    let broke = subscriber(data, "+4930222222", "0", &[&format!("{TARGET}:20")], &[]);
    let heard = invite(w.forwarder.sip, "+4930222222", LIMIT).await;
    assert_eq!(heard.status, 402, "{heard:?}");
    assert!(heard.header("Warning").is_some_and(|w| !w.is_empty()));
    // Suspended.
    let sub = subscriber(data, "+4930333333", "5.00", &[&format!("{TARGET}:20")], &[]);
    w.forwarder
        .cli(&["subscriber", "suspend", &sub.to_string()]);
    let heard = invite(w.forwarder.sip, "+4930333333", LIMIT).await;
    assert_eq!(heard.status, 403, "{heard:?}");
    // Refused calls leave no CDR and no charge.
    let none = w.forwarder.cli(&["cdr", "list", &broke.to_string()]);
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    // Counted as refusals by status, none as a call that went anywhere.
    for status in [404, 402, 403] {
        let sample = format!("forwarder_calls_refused_total{{status=\"{status}\"}}");
        assert_eq!(w.forwarder.metric(&sample).await, 1.0, "{sample}");
    }
    assert_eq!(
        w.forwarder.metric("forwarder_calls_offered_total").await,
        3.0
    );
    assert_eq!(
        w.forwarder
            .metric("forwarder_post_dial_delay_seconds_count")
            .await,
        0.0
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn central_down_warm_cache_calls_go_on_cold_cache_fast_503() {
    // The callee takes two calls; route answers go stale after 1 s.
    let mut w = world_with(
        &[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")],
        &["-m", "2"],
        1,
    )
    .await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    // Warm the cache with a first call, then take central away.
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    w.forwarder.closed_cdrs(sub, 1).await;
    w.net.stop_central().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Warm: the cached (now stale) answer carries the call.
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdrs = w.forwarder.closed_cdrs(sub, 2).await;
    let second = &cdrs[0];
    assert_eq!(second["status"], "completed", "{second:#}");
    assert_eq!(
        second["decision"]["targets"][0]["routes"], "stale",
        "{second:#}"
    );
    // A destination never asked before: nothing cached, a quick 503.
    let cold = subscriber(
        &w.forwarder.data,
        "+4930444444",
        "10.00",
        &["+33123456789:20"],
        &[],
    );
    let heard = invite(w.forwarder.sip, "+4930444444", LIMIT).await;
    assert_eq!(heard.status, 503, "{heard:?}");
    assert!(heard.elapsed < Duration::from_secs(10), "{heard:?}");
    let cdr = &w.forwarder.closed_cdrs(cold, 1).await[0];
    assert_eq!(cdr["status"], "failed");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_call_over_the_concurrent_call_cap_gets_486() {
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &["--max-calls", "1"],
    );
    let first = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    w.forwarder.cdr_with_status(sub, "answered").await;
    let heard = invite(w.forwarder.sip, SUBSCRIBER_NUMBER, LIMIT).await;
    assert_eq!(heard.status, 486, "{heard:?}");
    assert!(heard.header("Reason").is_some(), "{heard:?}");
    first.succeeded().await;
    assert_eq!(w.forwarder.closed_cdrs(sub, 1).await.len(), 1);
    w.end().await;
}

/// The Berlin weekday and hour now, for time-window rules.
fn berlin_now() -> (String, u32) {
    use chrono::{Datelike, Timelike};
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Berlin);
    let day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [now.weekday().num_days_from_monday() as usize];
    (day.to_owned(), now.hour())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_window_rules_pick_the_target_for_the_local_time() {
    const DAYTIME: &str = "+441632960002";
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    // The first rule's window is the hour twelve hours from now (not now);
    // the second rule (no window) applies.
    let (day, hour) = berlin_now();
    let away = (hour + 12) % 24;
    let rules = serde_json::json!({"rules": [
        {"name": "away", "targets": [{"number": DAYTIME, "ring_timeout_secs": 20}],
         "windows": [{"days": ["mon","tue","wed","thu","fri","sat","sun"],
                      "start": format!("{away:02}:00"), "end": format!("{:02}:00", (away + 1) % 24)}]},
        {"name": "always", "targets": [{"number": TARGET, "ring_timeout_secs": 20}]}
    ]});
    let file = w.net.path("rules.json");
    std::fs::write(&file, rules.to_string()).unwrap();
    w.forwarder.cli(&[
        "rule",
        "set",
        &sub.to_string(),
        "--file",
        file.to_str().unwrap(),
    ]);
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(
        cdr["target"], TARGET,
        "the window rule must not apply now ({day} {hour}h): {cdr:#}"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_second_forwarding_target_is_tried_when_the_first_rings_out() {
    const MOBILE: &str = "+449123456789";
    // carrier-a serves only the first target and rings forever; carrier-b
    // serves only the second and answers.
    let w = world(&[
        ("carrier-a", "441632,0.0100,0,1,1,,\n", "uas_ringing.xml"),
        ("carrier-b", "449,0.0200,0,1,1,,\n", "uas_answer.xml"),
    ])
    .await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:2"), &format!("{MOBILE}:20")],
        &[],
    );
    w.net.wait_routes(MOBILE, &["carrier-b"]).await;
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["target"], MOBILE, "{cdr:#}");
    let attempts = cdr["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{cdr:#}");
    assert_eq!(attempts[0]["forward_to"], TARGET);
    assert!(
        attempts[0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("no answer"),
        "{cdr:#}"
    );
    assert_eq!(attempts[1]["forward_to"], MOBILE);
    assert_eq!(cdr["provider_name"], "carrier-b");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_in_progress_when_the_forwarder_crashes_is_closed_and_billed_at_restart() {
    let w = world(&[("carrier", "44,0.0100,0,1,1,,\n", "uas_answer.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_wait_bye.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    w.forwarder.cdr_with_status(sub, "answered").await;
    // Up for a few heartbeats (1 s each), then the forwarder dies.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let World {
        net,
        forwarder,
        gateways,
        callees,
        ..
    } = w;
    let data = forwarder.crash().await;
    drop(caller);
    let open = cli(&data, &["cdr", "list", &sub.to_string()]);
    assert_eq!(
        open[0]["status"], "answered",
        "left open by the crash: {open}"
    );
    // Restarted: the call is closed and billed once, from its answer to the last note.
    let forwarder = Forwarder::serve(&data, None).await;
    let cdr = &forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["status"], "completed", "{cdr:#}");
    let secs = cdr["billable_seconds"].as_u64().unwrap();
    assert!((2..=5).contains(&secs), "billed {secs} s: {cdr:#}");
    let price = dec(&cdr["rating"]["price"]);
    let account = forwarder.cli(&["account", "show", &sub.to_string()]);
    assert_eq!(
        dec(&account["standing"]["balance"]),
        Decimal::new(1000, 2) - price
    );
    // A second restart bills nothing more.
    forwarder.stop().await;
    let forwarder = Forwarder::serve(&data, None).await;
    let again = forwarder.cli(&["account", "show", &sub.to_string()]);
    assert_eq!(again["standing"]["balance"], account["standing"]["balance"]);
    forwarder.stop().await;
    for (_, g) in gateways {
        g.shutdown().await;
    }
    drop(callees);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_provider_is_given_up_after_the_setup_deadline() {
    let w = world(&[("working", "44,0.0200,0,1,1,,\n", "uas_answer.xml")]).await;
    silent_provider(&w.net, "silent", free_port(), "44,0.0050,0,1,1,,\n").await;
    w.net.wait_routes(TARGET, &["working", "silent"]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_call_rtp.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    let attempts = cdr["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{cdr:#}");
    assert_eq!(attempts[0]["provider"], "silent");
    assert!(
        attempts[0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("no response"),
        "{cdr:#}"
    );
    assert_eq!(attempts[1]["provider"], "working");
    assert_eq!(cdr["provider_name"], "working");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_the_same_price_the_provider_with_lower_latency_is_chosen() {
    let net = Network::start().await;
    let mut gateways = Vec::new();
    let mut callees = Vec::new();
    for (name, delay_ms) in [("far", 60u64), ("near", 0)] {
        let callee = spawn_sipp_with("uas_answer.xml", None, &["-rtp_echo"]);
        let port = free_port();
        // The far provider's registered address is a relay adding 60 ms each way.
        let registered = if delay_ms > 0 {
            delay_proxy(
                format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_millis(delay_ms),
            )
            .await
            .port()
        } else {
            port
        };
        let reg = net.register(name, registered).await;
        let config = net.gateway_config(name, port, callee.target().port(), "44,0.0100,0,1,1,,\n");
        gateways.push(start_gateway_in_process(&config, Some(&reg.token)).await);
        callees.push(callee);
    }
    net.wait_routes(TARGET, &["far", "near"]).await;
    let home = net.register("home-telecom", free_port()).await;
    let data = net.path("forwarder");
    Forwarder::init(&data, &setup(&net, &home.token, ""));
    let forwarder = Forwarder::serve(&data, Some(&home.token)).await;
    forwarder.enrolled().await;
    let sub = subscriber(
        &data,
        SUBSCRIBER_NUMBER,
        "10.00",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_call_rtp.xml", forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &forwarder.closed_cdrs(sub, 1).await[0];
    assert_eq!(cdr["provider_name"], "near", "{cdr:#}");
    let candidates = cdr["decision"]["targets"][0]["decision"]["candidates"]
        .as_array()
        .unwrap();
    let latency = |name: &str| {
        candidates
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["latency"].as_f64())
            .unwrap()
    };
    assert!(latency("far") > latency("near") + 50.0, "{candidates:#?}");
    forwarder.stop().await;
    for g in gateways {
        g.shutdown().await;
    }
    drop(callees);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prepaid_call_is_ended_when_the_balance_would_run_out() {
    // 0.60/min + 20 % = 0.012 per second, billed per second; 0.03 buys 2 s
    // (rounded to the cent: 0.02), well before the 4 s media timeout.
    let w = world(&[("carrier", "44,0.6000,0,1,1,,\n", "uas_answer.xml")]).await;
    let sub = subscriber(
        &w.forwarder.data,
        SUBSCRIBER_NUMBER,
        "0.03",
        &[&format!("{TARGET}:20")],
        &[],
    );
    let caller = spawn_sipp_calling("uac_wait_bye.xml", w.forwarder.sip, SUBSCRIBER_NUMBER, &[]);
    caller.succeeded().await;
    let cdr = &w.forwarder.closed_cdrs(sub, 1).await[0];
    assert!(
        cdr["hangup_cause"]
            .as_str()
            .unwrap_or_default()
            .starts_with("balance limit reached"),
        "{cdr:#}"
    );
    let secs = cdr["billable_seconds"].as_u64().unwrap();
    assert!((1..=3).contains(&secs), "{cdr:#}");
    let balance = w.balance(sub);
    assert!(
        balance >= Decimal::ZERO,
        "the call must not overdraw: {balance}"
    );
    assert!(
        balance < Decimal::new(3, 2),
        "the call was charged: {balance}"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_starts_with_a_listen_address_and_a_central_url_even_when_central_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Central's root certificate, from a central that is not running.
    let ca = dir.path().join("ca-src");
    central::app::init(&ca, &central::app::InitOptions::default()).unwrap();
    std::fs::copy(
        ca.join(central::app::ROOT_CERT),
        data.join("central-ca.crt"),
    )
    .unwrap();
    let sip_port = free_port();
    let dead = free_tcp_port();
    std::fs::write(
        data.join("forwarder.toml"),
        format!(
            "[sip]\nlisten = \"127.0.0.1:{sip_port}\"\n\n[central]\ncentral_url = \"https://127.0.0.1:{dead}\"\n"
        ),
    )
    .unwrap();
    let forwarder = Forwarder::serve(data, Some("enr_not-used-yet")).await;
    assert_eq!(forwarder.sip.port(), sip_port);
    // No credential yet: calls are refused at once, with the reason.
    let heard = invite(forwarder.sip, SUBSCRIBER_NUMBER, LIMIT).await;
    assert_eq!(heard.status, 503, "{heard:?}");
    assert!(
        heard
            .header("Warning")
            .is_some_and(|w| w.contains("not enrolled")),
        "{heard:?}"
    );
    forwarder.stop().await;
}
