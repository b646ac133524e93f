//! `roomtoken refresh`: one pass now, over every connection or one.

use super::*;

pub(super) async fn refresh(
    broker: &Broker,
    id: Option<&ConnectionId>,
    force: bool,
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let options = PassOptions {
        only: id.cloned(),
        force,
    };
    let report = refresh_pass(broker, &options, now).await?;
    let mut failed = 0;
    for result in &report.results {
        let (id, outcome) = (&result.id, &result.outcome);
        let text = match outcome {
            Outcome::Refreshed { resources } => format!("refreshed ({})", resources.join(", ")),
            Outcome::NotDue => "not due".into(),
            Outcome::PendingConsent => "waiting for consent".into(),
            Outcome::Removed => "removed meanwhile".into(),
            Outcome::Skipped(state) => {
                format!("skipped: {} (use --force to try anyway)", state)
            }
            Outcome::Failed(error) => {
                failed += 1;
                format!(
                    "failed: {} {}: {}",
                    error.class,
                    printable(&error.code),
                    printable(&error.message)
                )
            }
            Outcome::BackingOff(until) => format!(
                "backing off after failures until {} (use --force to try now)",
                rfc3339(*until)
            ),
            Outcome::LostRace => "refreshed by another process meanwhile".into(),
            Outcome::Busy => "being refreshed by another pass right now".into(),
            Outcome::Deferred => {
                "due, left for the next pass (write budget or time ran out)".into()
            }
            Outcome::WriteQuota(until) => {
                failed += 1;
                format!(
                    "not refreshed: its secrets were written too often lately (Secrets Manager's version quota); room again at {}",
                    rfc3339(*until)
                )
            }
            Outcome::StoreFailed(message) => {
                failed += 1;
                format!("store failed: {}", printable(message))
            }
        };
        writeln!(out, "{id}\t{text}")?;
    }
    if failed > 0 {
        bail!("{failed} connection(s) could not be refreshed");
    }
    Ok(())
}
