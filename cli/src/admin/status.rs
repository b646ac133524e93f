//! `roomtoken status`: the fleet's table (the worst first) or JSON, and
//! exit code 2 when a connection needs a human.

use super::*;

/// Some connections need a human: `roomtoken status` exits with 2.
#[derive(Debug)]
pub struct NeedsHuman(pub usize);

impl std::fmt::Display for NeedsHuman {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connection(s) need a human (see their advice)",
            self.0
        )
    }
}

impl std::error::Error for NeedsHuman {}

pub(super) async fn status(
    broker: &Broker,
    id: Option<&ConnectionId>,
    json: bool,
    states: &[ConnectionState],
    out: &mut dyn Write,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let ids = match id {
        Some(id) => {
            admin::get_connection(broker, id).await?;
            vec![id.clone()]
        }
        None => broker.repo.connection_ids().await?,
    };
    let mut views: Vec<StatusView> = Vec::new();
    for id in &ids {
        let view = load_status_view(broker, id, now).await?;
        if states.is_empty() || states.contains(&view.state) {
            views.push(view);
        }
    }
    // Those a human must act on first, the most serious state first.
    views.sort_by(|a, b| {
        (!a.needs_human, severity(a.state), a.connection.as_str()).cmp(&(
            !b.needs_human,
            severity(b.state),
            b.connection.as_str(),
        ))
    });
    if json {
        let value = match (id, views.first()) {
            (Some(_), Some(view)) => serde_json::to_value(view)?,
            _ => serde_json::to_value(&views)?,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        write_status_table(&views, out)?;
    }
    match views.iter().filter(|v| v.needs_human).count() {
        0 => Ok(()),
        needing => Err(NeedsHuman(needing).into()),
    }
}

/// The order of states in the fleet's table: the worst first.
pub(super) fn severity(state: ConnectionState) -> u8 {
    match state {
        ConnectionState::Blocked => 0,
        ConnectionState::AppMisconfigured => 1,
        ConnectionState::ReconnectRequired => 2,
        ConnectionState::TokensTooShort => 3,
        ConnectionState::PendingConsent => 4,
        ConnectionState::Degraded => 5,
        ConnectionState::Connected => 6,
    }
}

pub(super) fn write_status_table(views: &[StatusView], out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<[String; 10]> = views
        .iter()
        .map(|view| {
            let earliest = view
                .expires_at
                .values()
                .min()
                .map(|at| at[..at.len().min(16)].to_owned());
            let last_error = view
                .last_error
                .as_ref()
                .map(|e| format!("{} {}", e.class, printable(&e.code)));
            let credential = view.credential_expires.as_ref().map(|date| {
                let days = view.credential_days_left.unwrap_or_default();
                match view.credential_in_use {
                    Some(SecretInUse::Previous) => format!("{date} ({days}d, previous)"),
                    _ => format!("{date} ({days}d)"),
                }
            });
            let dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
            // App-only: what each resource's token grants (`none` plainly).
            let permissions = view.granted_permissions.as_ref().map(|granted| {
                granted
                    .iter()
                    .map(|(resource, roles)| match roles.is_empty() {
                        true => format!("{resource}: none"),
                        false => format!("{resource}: {}", printable(&roles.join(","))),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            [
                view.connection.to_string(),
                <&str>::from(view.mode).to_owned(),
                <&str>::from(view.state).to_owned(),
                printable(view.account.as_deref().unwrap_or("-")).into_owned(),
                dash(earliest),
                dash(view.last_refresh_at.map(|t| rfc3339(t)[..16].to_owned())),
                dash(last_error),
                dash(credential),
                dash(permissions.filter(|p| !p.is_empty())),
                view.advice.clone(),
            ]
        })
        .collect();
    let header = [
        "CONNECTION",
        "MODE",
        "STATE",
        "ACCOUNT",
        "TOKEN EXPIRES",
        "LAST REFRESH",
        "LAST ERROR",
        "CREDENTIAL",
        "APP PERMISSIONS",
        "ADVICE",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(n, cell)| {
                if n == last {
                    cell.to_string()
                } else {
                    format!("{cell:<width$}", width = widths[n])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
