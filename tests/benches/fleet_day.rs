//! What a fleet costs on Secrets Manager: a simulated day (a clock the
//! simulation drives, refresh passes every 5 minutes, a connection in every
//! failure class, displays reading steadily), every store call counted as
//! Secrets Manager bills and throttles it. Prints per connection-month:
//! secrets, reads, writes, API calls and dollars at published prices; the
//! most new versions of any secret in any hour and day; the peak write
//! calls in any second of a pass; write calls per refresh.
//!
//! Run: `scripts/bench-cost.sh` (or `cargo bench -p roomtoken-tests --bench fleet_day`).
//! Targets: at most $0.90 per connection-month with displays honouring
//! `Cache-Control`, at most $1.00 with displays polling every few seconds
//! (one warm token-read), at most 4 write calls per refresh, at most 6 versions per secret per hour,
//! no second above the write budget (20).

use roomtoken_tests::fleet::{Behaviour, Displays, FleetOptions, FleetReport, simulate};
use std::time::Duration;

fn print(label: &str, report: &FleetReport) {
    let month = report.monthly();
    let (product_hour, _) = report.max_versions_per_hour_by_the_product();
    let (any_hour, _) = report.max_versions_per_hour();
    let (any_day, _) = report.max_versions_per_day();
    let (most, average) = report.write_calls_per_refresh();
    println!(
        "== {label}: {} connections, {} h simulated",
        report.connections, report.hours
    );
    println!(
        "   per connection-month: secrets {:.2}, read calls {:.0}, write calls {:.0}, API calls {:.0}, cost ${:.3} \
         (secrets ${:.3}, calls ${:.3})",
        month.secrets,
        month.reads,
        month.writes,
        month.calls,
        month.usd,
        month.secrets * roomtoken_tests::fleet::SECRET_MONTH_USD,
        month.calls * roomtoken_tests::fleet::USD_PER_CALL,
    );
    println!(
        "   new versions of one secret: at most {product_hour} in an hour from the product, \
         {any_hour} in an hour and {any_day} in a day from anyone"
    );
    println!(
        "   write calls: at most {} in a second of a pass, at most {most} per connection and pass, \
         {average:.2} per refresh; refreshes {}, reads served {}, reads refused while a token was valid {}",
        report.peak_pass_writes_per_second(),
        report.refreshes,
        report.reads_served,
        report.reads_failed_with_a_valid_token,
    );
    println!("   pass outcomes: {:?}", report.outcomes);
}

#[tokio::main]
async fn main() {
    // 100 healthy connections and 4 in each failure class, a display each.
    let mut fleet = FleetOptions::day(4);
    fleet.connections.insert(Behaviour::Healthy, 100);
    // Lambda keeps no promise on how long an environment lives: count a
    // cold start of token-refresh (its memory of what passes found is
    // lost) every hour.
    fleet.refresh_cold_start_every = Some(Duration::from_secs(3_600));
    let honouring = simulate(&fleet).await;
    print("displays honouring Cache-Control", &honouring);

    fleet.displays = Displays::EveryFewSeconds;
    let polling = simulate(&fleet).await;
    print("displays polling every 10 seconds (worst case)", &polling);

    fleet.displays = Displays::HonourCacheControl;
    fleet.key_churn_every_minutes = Some(5);
    let churn = simulate(&fleet).await;
    print(
        "an operator churning keys every 5 minutes on one connection",
        &churn,
    );
}
