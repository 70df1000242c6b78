//! Two central instances over one PostgreSQL database: a rate upload on one
//! reaches the other's route answers through LISTEN/NOTIFY.

mod common;

use common::{Backend, Central};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_instance_learns_of_rate_changes() {
    let Some(admin) = common::postgres_url("second_instance_learns_of_rate_changes") else {
        return;
    };
    let first = Central::start(Backend::Postgres(admin)).await;
    // The second instance serves the same data directory and database.
    let dir2 = tempfile::tempdir().unwrap();
    for f in [
        "ca.crt",
        "server.crt",
        "server.key",
        "operator.crt",
        "operator.key",
    ] {
        std::fs::copy(first.dir.path().join(f), dir2.path().join(f)).unwrap();
    }
    copy_dir(&first.dir.path().join("ca"), &dir2.path().join("ca"));
    let url = first.database_url.clone();
    let second = Central::serve_dir(dir2, None, move |cfg| cfg.database_url = url).await;

    let a = first.provider("alpha", "EUR").await;
    let started = Instant::now();
    let res = a
        .client
        .put(first.url(&format!("/v1/providers/{}/rates", a.id)))
        .header("content-type", "text/csv")
        .body("4930,0.0100,0,60,60\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v = second
        .routes_until("number=%2B4930123", |v| {
            v["routes"].as_array().map(|r| r.len()) == Some(1)
        })
        .await;
    assert_eq!(v["routes"][0]["provider"], "alpha", "{v}");
    eprintln!(
        "second instance saw the upload after {:?}",
        started.elapsed()
    );

    // Suspension on the second instance reaches the first.
    let res = second
        .operator()
        .post(second.url(&format!("/v1/providers/{}/suspend", a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v = first
        .routes_until("number=%2B4930123", |v| {
            v["routes"].as_array().map(|r| r.is_empty()) == Some(true)
        })
        .await;
    assert_eq!(v["routes"].as_array().unwrap().len(), 0, "{v}");
    second.shutdown().await;
    first.shutdown().await;
    let _ = Duration::ZERO;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
