//! `kodo-access check`, `status`, `alerts` and `demo`: the fleet as an operator sees it.

use chrono::Utc;

use super::{NotHealthy, Output};
use crate::checks::run::CheckOutcome;
use crate::checks::verdict::{Severity, State};
use crate::config::Settings;
use crate::domain::{OrgRef, input_error};
use crate::store;

pub async fn check(
    settings: Settings,
    org: Option<&str>,
    all: bool,
    output: Output,
) -> anyhow::Result<()> {
    let context = super::one_shot_context(settings).await?;
    let ids = {
        let mut connection = context.pool.acquire().await?;
        match (org, all) {
            (Some(org), _) => {
                let reference = OrgRef::parse(org);
                vec![
                    store::organizations::require(&mut connection, &reference)
                        .await?
                        .id,
                ]
            }
            (None, true) => store::checks::enabled_ids(&mut connection).await?,
            (None, false) => {
                return Err(input_error("name an organization to check, or pass --all").into());
            }
        }
    };
    let results = crate::checks::run::check_organizations(&context, &ids).await?;
    // Deliver what the checks fired right away, rather than on the daemon's next pass.
    if let Err(error) = crate::alerts::delivery::deliver_outbox(&context).await {
        tracing::warn!("delivering alerts: {error:#}");
    }
    let mut outcomes: Vec<CheckOutcome> = Vec::new();
    for (name, result) in results {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => eprintln!("{name}: the check could not be stored: {error:#}"),
        }
    }
    let unhealthy = outcomes
        .iter()
        .filter(|o| o.state != State::Healthy)
        .count();
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Output::Table => {
            for outcome in &outcomes {
                println!(
                    "{}: {} (was {})",
                    outcome.organization,
                    outcome.state.as_str(),
                    outcome.previous_state
                );
                for finding in &outcome.findings {
                    let mark = match finding.severity {
                        Severity::Critical => "!!",
                        Severity::Warning => "! ",
                        Severity::Info => "  ",
                    };
                    println!("  {mark} {}: {}", finding.kind, finding.message);
                }
                if !outcome.alerts_fired.is_empty() {
                    println!("  alerts fired: {}", outcome.alerts_fired.join(", "));
                }
                if !outcome.alerts_resolved.is_empty() {
                    println!("  alerts resolved: {}", outcome.alerts_resolved.join(", "));
                }
            }
        }
    }
    if unhealthy > 0 {
        return Err(NotHealthy(unhealthy).into());
    }
    Ok(())
}

pub async fn status(settings: Settings, output: Output) -> anyhow::Result<()> {
    let pool = store::connect(&settings.database).await?;
    let mut connection = pool.acquire().await?;
    let statuses = store::checks::statuses(&mut connection).await?;
    let firing = store::alerts::firing_by_kind(&mut connection).await?;
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for status in &statuses {
        let key = if status.enabled {
            status.state.as_str()
        } else {
            "disabled"
        };
        *counts.entry(key).or_default() += 1;
    }
    let badness = |state: &str| {
        State::parse(state)
            .map(|s| i32::from(s.badness()))
            .unwrap_or(-1)
    };
    let mut by_state: Vec<(&str, usize)> = counts.into_iter().collect();
    by_state.sort_by_key(|(state, _)| -badness(state));
    let mut expiring: Vec<&store::checks::StatusRow> = statuses
        .iter()
        .filter(|s| s.secret_expires_at.is_some())
        .collect();
    expiring.sort_by_key(|s| s.secret_expires_at);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "organizations": statuses.len(),
                "by_state": by_state.iter().map(|(s, n)| serde_json::json!({"state": s, "count": n})).collect::<Vec<_>>(),
                "alerts_firing": firing.iter().map(|(k, n)| serde_json::json!({"kind": k, "count": n})).collect::<Vec<_>>(),
                "secrets_expiring_soonest": expiring.iter().take(10).map(|s| serde_json::json!({"organization": s.name, "expires": s.secret_expires_at})).collect::<Vec<_>>(),
                "statuses": statuses,
            }))?
        ),
        Output::Table => {
            println!("{} organization(s)", statuses.len());
            for (state, count) in &by_state {
                println!("  {count:>6}  {state}");
            }
            let total: i64 = firing.iter().map(|(_, n)| n).sum();
            println!("{total} alert(s) firing");
            if !expiring.is_empty() {
                println!("secrets expiring soonest:");
                for status in expiring.iter().take(10) {
                    let end = status.secret_expires_at.expect("filtered");
                    let days = (end - Utc::now()).num_hours() as f64 / 24.0;
                    println!(
                        "  {:<24} {} ({days:.1} days)",
                        status.name,
                        end.format("%Y-%m-%d %H:%M UTC")
                    );
                }
            }
            let mut table = super::table(&[
                "ORGANIZATION",
                "STATE",
                "SINCE",
                "LAST KNOWN",
                "LAST CHECK",
                "SILENCED UNTIL",
            ]);
            let mut sorted: Vec<&store::checks::StatusRow> = statuses.iter().collect();
            sorted.sort_by_key(|s| (-i32::from(s.state.badness()), s.name.clone()));
            for status in sorted {
                table.add_row(vec![
                    status.name.clone(),
                    if status.enabled {
                        status.state.to_string()
                    } else {
                        format!("{} (disabled)", status.state)
                    },
                    super::format_time(Some(status.state_since)),
                    status
                        .last_known_state
                        .map_or_else(|| "-".into(), |state| state.to_string()),
                    super::format_time(status.last_check_at),
                    super::format_time(status.silenced_until.filter(|t| *t > Utc::now())),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

pub async fn alerts(settings: Settings, output: Output) -> anyhow::Result<()> {
    let pool = store::connect(&settings.database).await?;
    let mut connection = pool.acquire().await?;
    let active = store::alerts::active(&mut connection).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&active)?),
        Output::Table => {
            if active.is_empty() {
                println!("no alerts firing");
                return Ok(());
            }
            let mut table = super::table(&[
                "SEVERITY",
                "ORGANIZATION",
                "ALERT",
                "SINCE",
                "NOTE",
                "SUMMARY",
            ]);
            for alert in &active {
                let note = if !alert.organization_enabled {
                    "disabled"
                } else if alert.silenced {
                    "silenced"
                } else {
                    ""
                };
                table.add_row(vec![
                    alert.severity.clone(),
                    alert.organization.clone().unwrap_or_default(),
                    alert.labels["alertname"]
                        .as_str()
                        .unwrap_or(&alert.kind)
                        .to_string(),
                    super::format_time(Some(alert.started_at)),
                    note.to_string(),
                    alert.annotations["summary"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

pub async fn rotate(settings: Settings, org: &str) -> anyhow::Result<()> {
    let context = super::one_shot_context(settings).await?;
    let reference = OrgRef::parse(org);
    let organization = {
        let mut connection = context.pool.acquire().await?;
        store::organizations::require(&mut connection, &reference).await?
    };
    let deliverers = context.settings.rotation.deliverers_for(&organization.name);
    if deliverers.is_empty() {
        eprintln!(
            "warning: no [[rotation.*]] deliverer serves {}: the backup server does not receive the new secret",
            organization.name
        );
    }
    let rotation_settings =
        crate::rotation::procedure::RotationSettings::from_config(&context.settings.rotation);
    let report = crate::rotation::procedure::rotate(
        &context,
        organization.id,
        &deliverers,
        &rotation_settings,
    )
    .await
    .map_err(crate::rotation::procedure::RotationError::into_anyhow)?;
    use crate::rotation::procedure::Reached;
    let rotation = report
        .rotation_id
        .map_or_else(|| "-".to_string(), |id| id.to_string());
    if report.step == Reached::Elsewhere {
        println!(
            "{}: rotation {rotation} moved on while this command verified it; another kodo-access carries it on",
            organization.name
        );
        return Ok(());
    }
    println!(
        "{}: rotation {rotation} is {}{}",
        organization.name,
        report.step,
        if report.step == Reached::Step(crate::domain::RotationStep::Activated) {
            " (the replaced secret is removed after the grace period)"
        } else {
            ""
        }
    );
    Ok(())
}

pub async fn rotations(
    settings: Settings,
    org: Option<&str>,
    output: Output,
) -> anyhow::Result<()> {
    let pool = store::connect(&settings.database).await?;
    let mut connection = pool.acquire().await?;
    let organization_id = match org {
        None => None,
        Some(org) => {
            let reference = OrgRef::parse(org);
            Some(
                store::organizations::require(&mut connection, &reference)
                    .await?
                    .id,
            )
        }
    };
    let rows = store::rotations::history(&mut connection, organization_id).await?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => {
            if rows.is_empty() {
                println!("no rotations yet");
                return Ok(());
            }
            let mut table = super::table(&[
                "ORGANIZATION",
                "ROTATION",
                "STEP",
                "OUTCOME",
                "ATTEMPTS",
                "STARTED",
                "FINISHED",
                "NEW SECRET ID",
                "LAST ERROR",
            ]);
            for row in rows {
                table.add_row(vec![
                    row.organization,
                    row.id.to_string(),
                    row.step.to_string(),
                    row.outcome.unwrap_or_else(|| "in progress".into()),
                    row.attempts.to_string(),
                    super::format_time(Some(row.created_at)),
                    super::format_time(row.finished_at),
                    row.new_key_id
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "-".into()),
                    match (&row.failure_reason, &row.last_error) {
                        (Some(reason), Some(error)) => format!("{reason}: {error}"),
                        _ => String::new(),
                    }
                    .chars()
                    .take(100)
                    .collect(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}
