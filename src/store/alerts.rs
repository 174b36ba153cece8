//! The `alerts` table (one lifecycle per organization and kind) and the `alert_outbox`
//! (one notification per alert event and sink, delivered at least once).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A firing alert, as the check that may resolve it reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FiringRow {
    pub id: Uuid,
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub severity: String,
}

pub struct NewAlert {
    pub id: Uuid,
    pub kind: String,
    pub severity: String,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
}

/// Inserts alerts (one statement for all of them).
pub async fn insert_firing(
    connection: &mut PgConnection,
    organization_id: crate::domain::OrganizationId,
    started_at: DateTime<Utc>,
    alerts: &[NewAlert],
) -> Result<(), sqlx::Error> {
    if alerts.is_empty() {
        return Ok(());
    }
    super::count_statements(1);
    sqlx::query(
        "INSERT INTO alerts (id, organization_id, kind, severity, status, labels, annotations, started_at)
         SELECT id, $1, kind, severity, 'firing', labels, annotations, $2
         FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
              AS t(id, kind, severity, labels, annotations)",
    )
    .bind(organization_id)
    .bind(started_at)
    .bind(alerts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.kind.clone()).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.severity.clone()).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.labels.clone()).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.annotations.clone()).collect::<Vec<_>>())
    .execute(connection)
    .await
    .map(|_| ())
}

/// Resolves alerts by id (one statement).
pub async fn resolve(
    connection: &mut PgConnection,
    ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    super::count_statements(1);
    sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = $2 WHERE id = ANY($1) AND status = 'firing'")
        .bind(ids)
        .bind(at)
        .execute(connection)
        .await
        .map(|_| ())
}

/// Rewrites the text of firing alerts (one statement, none when nothing changed).
pub async fn update_annotations(
    connection: &mut PgConnection,
    updates: &[(Uuid, serde_json::Value)],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    super::count_statements(1);
    sqlx::query(
        "UPDATE alerts SET annotations = t.annotations
         FROM UNNEST($1::uuid[], $2::jsonb[]) AS t(id, annotations)
         WHERE alerts.id = t.id AND alerts.status = 'firing'",
    )
    .bind(updates.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(updates.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>())
    .execute(connection)
    .await
    .map(|_| ())
}

/// Queues notifications: every (alert, payload) for every sink (one statement).
pub async fn enqueue(
    connection: &mut PgConnection,
    sinks: &[String],
    notifications: &[(Uuid, serde_json::Value)],
) -> Result<(), sqlx::Error> {
    if sinks.is_empty() || notifications.is_empty() {
        return Ok(());
    }
    super::count_statements(1);
    let mut alert_ids = Vec::new();
    let mut sink_names = Vec::new();
    let mut payloads = Vec::new();
    for sink in sinks {
        for (alert_id, payload) in notifications {
            alert_ids.push(*alert_id);
            sink_names.push(sink.clone());
            payloads.push(payload.clone());
        }
    }
    sqlx::query(
        "INSERT INTO alert_outbox (alert_id, sink, payload)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[])",
    )
    .bind(alert_ids)
    .bind(sink_names)
    .bind(payloads)
    .execute(connection)
    .await
    .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub sink: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

/// Claims due notifications for delivery (other daemons skip them for `lease`).
/// Notifications of disabled or silenced organizations wait.
pub async fn claim_due(
    connection: &mut PgConnection,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxRow>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE alert_outbox SET next_attempt_at = $1
         WHERE id IN (
             SELECT x.id FROM alert_outbox x
             JOIN alerts a ON a.id = x.alert_id
             LEFT JOIN organizations o ON o.id = a.organization_id
             LEFT JOIN organization_status s ON s.organization_id = a.organization_id
             WHERE x.delivered_at IS NULL AND x.next_attempt_at <= now()
               AND (o.id IS NULL OR o.enabled)
               AND (s.silenced_until IS NULL OR s.silenced_until <= now())
             ORDER BY x.id
             LIMIT $2
             FOR UPDATE OF x SKIP LOCKED)
         RETURNING id, sink, payload, attempts",
    )
    .bind(lease_until)
    .bind(limit)
    .fetch_all(connection)
    .await
}

pub async fn mark_delivered(
    connection: &mut PgConnection,
    ids: &[i64],
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alert_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(note)
        .execute(connection)
        .await
        .map(|_| ())
}

pub async fn mark_failed(
    connection: &mut PgConnection,
    ids: &[i64],
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = ANY($1)")
        .bind(ids)
        .bind(next_attempt_at)
        .bind(error)
        .execute(connection)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ActiveAlert {
    pub id: Uuid,
    pub organization: Option<String>,
    pub kind: String,
    pub severity: String,
    pub started_at: DateTime<Utc>,
    pub labels: serde_json::Value,
    pub annotations: serde_json::Value,
    pub silenced: bool,
    pub organization_enabled: bool,
}

/// Firing alerts, worst first.
pub async fn active(connection: &mut PgConnection) -> Result<Vec<ActiveAlert>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.id, o.name AS organization, a.kind, a.severity, a.started_at, a.labels, a.annotations,
                COALESCE(s.silenced_until > now(), false) AS silenced,
                COALESCE(o.enabled, true) AS organization_enabled
         FROM alerts a
         LEFT JOIN organizations o ON o.id = a.organization_id
         LEFT JOIN organization_status s ON s.organization_id = a.organization_id
         WHERE a.status = 'firing'
         ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, o.name, a.kind",
    )
    .fetch_all(connection)
    .await
}

pub async fn firing_by_kind(
    connection: &mut PgConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT kind, count(*) FROM alerts WHERE status = 'firing' GROUP BY kind")
        .fetch_all(connection)
        .await
}

pub async fn pending_by_sink(
    connection: &mut PgConnection,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sink, count(*) FROM alert_outbox WHERE delivered_at IS NULL GROUP BY sink",
    )
    .fetch_all(connection)
    .await
}

/// The notification payload stored in the outbox (and sent as is to webhooks).
pub fn payload(
    status: &str,
    alert_id: uuid::Uuid,
    kind: &str,
    labels: &serde_json::Value,
    annotations: &serde_json::Value,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
) -> serde_json::Value {
    serde_json::json!({
        "status": status,
        "alert_id": alert_id,
        "kind": kind,
        "labels": labels,
        "annotations": annotations,
        "starts_at": starts_at.to_rfc3339(),
        "ends_at": ends_at.map(|t| t.to_rfc3339()),
    })
}
