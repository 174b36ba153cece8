//! Registering organizations as an operator does: flags, standard input, import files,
//! and every bad input named in the foundation issue, with nothing written on error.

use sqlx::PgPool;

use crate::support::*;

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn add_list_show_and_the_audit_log(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.run_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "contoso",
            "--tenant-id",
            TENANT_A,
            "--client-id",
            CLIENT_A,
            "--sharepoint-host",
            "contoso.sharepoint.com",
            "--label",
            "env=prod",
            "--label",
            "customer=42",
            "--secret-id",
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "--secret-expires",
            "2027-05-31",
        ],
        "Abc8Q~contoso-secret-value\n",
    )
    .success();
    env.add_org("fabrikam", TENANT_B, CLIENT_B, "Xyz8Q~fabrikam-secret")
        .success();

    let list = env.run(&["org", "list"]);
    list.success();
    assert!(
        list.stdout.contains("contoso") && list.stdout.contains("fabrikam"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains("customer=42,env=prod"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("2027-05-31"), "{}", list.stdout);

    let json = env.run(&["org", "list", "--output", "json"]);
    let organizations: Vec<serde_json::Value> =
        serde_json::from_str(&json.success().stdout).unwrap();
    assert_eq!(organizations.len(), 2);
    assert_eq!(organizations[0]["name"], "contoso");
    assert_eq!(organizations[0]["tenant_id"], TENANT_A);
    assert_eq!(organizations[0]["cloud"], "global");
    assert_eq!(
        organizations[0]["sharepoint_host"],
        "contoso.sharepoint.com"
    );
    assert_eq!(organizations[0]["secret_hint"], "Abc");

    // ORG is the name or the id.
    let id = organizations[1]["id"].as_str().unwrap().to_string();
    let show = env.run(&["org", "show", &id, "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&show.success().stdout).unwrap();
    assert_eq!(shown["name"], "fabrikam");
    assert_eq!(shown["credentials"][0]["status"], "current");
    let show = env.run(&["org", "show", "contoso"]);
    assert!(
        show.success()
            .stdout
            .contains("3f2504e0-4f89-41d3-9a0c-0305e82c3301")
    );
    assert!(!show.stdout.contains("contoso-secret-value"));

    let audit = env.run(&["audit", "contoso", "--output", "json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit.success().stdout).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["credential.added", "organization.added"]);
    assert_eq!(entries[0]["actor"], "cli:tester");
    assert!(!audit.stdout.contains("contoso-secret-value"));
}

#[sqlx::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~secret")
        .success();
    let before = (
        count(&pool, "organizations").await,
        count(&pool, "credentials").await,
        count(&pool, "audit_log").await,
    );

    let add = |name: &str, tenant: &str, client: &str, secret: &str| {
        env.add_org(name, tenant, client, secret)
    };
    add("fabrikam", "not-a-guid", CLIENT_B, "s3cret")
        .fails_with(2, "--tenant-id: invalid tenant id (10 characters given)");
    add("fabrikam", TENANT_B, "1234", "s3cret").fails_with(2, "--client-id: invalid client id");
    // A secret pasted into an id field is named by its field, never printed back.
    let pasted = env.run_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "fabrikam",
            "--tenant-id",
            TENANT_B,
            "--client-id",
            CLIENT_B,
            "--secret-id",
            "Pst8Q~a-secret-pasted-in-the-wrong-place",
        ],
        "s3cret",
    );
    pasted.fails_with(2, "invalid secret id");
    assert!(
        !pasted.stderr.contains("Pst8Q~") && !pasted.stdout.contains("Pst8Q~"),
        "{pasted:?}"
    );
    add("contoso", TENANT_B, CLIENT_B, "s3cret")
        .fails_with(2, "an organization named contoso already exists");
    add("other", TENANT_A, CLIENT_A, "s3cret")
        .fails_with(2, "is already registered as organization contoso");
    add("fabrikam", TENANT_B, CLIENT_B, "").fails_with(2, "the client secret is empty");
    add("fabrikam", TENANT_B, CLIENT_B, "\n").fails_with(2, "the client secret is empty");
    add("bad name!", TENANT_B, CLIENT_B, "s3cret").fails_with(2, "invalid organization name");
    env.run_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "x",
            "--tenant-id",
            TENANT_B,
            "--client-id",
            CLIENT_B,
            "--cloud",
            "mars",
        ],
        "s3cret",
    )
    .fails_with(2, "unknown cloud \"mars\"");
    env.run_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "x",
            "--tenant-id",
            TENANT_B,
            "--client-id",
            CLIENT_B,
            "--label",
            "novalue",
        ],
        "s3cret",
    )
    .fails_with(2, "invalid label \"novalue\"");
    env.run_with_stdin(
        &[
            "org",
            "add",
            "--name",
            "x",
            "--tenant-id",
            TENANT_B,
            "--client-id",
            CLIENT_B,
            "--sharepoint-host",
            "https://x",
        ],
        "s3cret",
    )
    .fails_with(2, "invalid SharePoint host");
    // The secret is never taken from an argument: there is no such flag.
    env.run(&[
        "org",
        "add",
        "--name",
        "x",
        "--tenant-id",
        TENANT_B,
        "--client-id",
        CLIENT_B,
        "--secret",
        "s3cret",
    ])
    .fails_with(2, "unexpected argument '--secret'");
    env.run(&["org", "show", "nobody"])
        .fails_with(2, "no organization nobody");
    env.run(&["org", "disable", "nobody"])
        .fails_with(2, "no organization nobody");
    env.run(&["org", "remove", "contoso"])
        .fails_with(2, "without --yes");

    let after = (
        count(&pool, "organizations").await,
        count(&pool, "credentials").await,
        count(&pool, "audit_log").await,
    );
    assert_eq!(before, after, "a refused command wrote something");
}

#[sqlx::test]
async fn secret_file_is_read_and_refused_when_others_can_read_it(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let secret_file = env.path("secret.txt");
    write_file(&secret_file, "Abc8Q~from-a-file\n", 0o644);
    let args = [
        "org",
        "add",
        "--name",
        "contoso",
        "--tenant-id",
        TENANT_A,
        "--client-id",
        CLIENT_A,
        "--secret-file",
        secret_file.to_str().unwrap(),
    ];
    env.run(&args)
        .fails_with(2, "accessible to other users (mode 0644)");
    assert_eq!(count(&pool, "organizations").await, 0);
    // Writable by its group, or owned by another user: either could swap the secret.
    write_file(&secret_file, "Abc8Q~from-a-file\n", 0o620);
    env.run(&args)
        .fails_with(2, "writable by its group (mode 0620)");
    write_file(&secret_file, "Abc8Q~from-a-file\n", 0o600);
    std::os::unix::fs::chown(&secret_file, Some(65534), None).unwrap();
    env.run(&args).fails_with(
        2,
        "owned by uid 65534, neither root nor this service's user",
    );
    assert_eq!(count(&pool, "organizations").await, 0);
    std::os::unix::fs::chown(&secret_file, Some(0), None).unwrap();
    write_file(&secret_file, "Abc8Q~from-a-file\n", 0o600);
    env.run(&args).success();
    let hint: String = sqlx::query_scalar("SELECT hint FROM credentials")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(hint, "Abc");
}

#[sqlx::test]
async fn set_secret_disable_enable_and_remove(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~first")
        .success();
    env.run_with_stdin(
        &[
            "org",
            "set-secret",
            "contoso",
            "--secret-expires",
            "2027-01-01T00:00:00Z",
        ],
        "Def8Q~second",
    )
    .success();
    let statuses: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, hint FROM credentials ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("previous".into(), Some("Abc".into())),
            ("current".into(), Some("Def".into()))
        ]
    );
    env.run_with_stdin(&["org", "set-secret", "contoso"], "")
        .fails_with(2, "the client secret is empty");

    env.run(&["org", "disable", "contoso"]).success();
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!enabled);
    assert!(env.run(&["org", "list"]).stdout.contains("disabled"));
    assert!(
        env.run(&["org", "disable", "contoso"])
            .stdout
            .contains("already disabled")
    );
    env.run(&["org", "enable", "contoso"]).success();

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM organizations")
        .fetch_one(&pool)
        .await
        .unwrap();
    env.run(&["org", "remove", "contoso", "--yes"]).success();
    assert_eq!(count(&pool, "organizations").await, 0);
    assert_eq!(
        count(&pool, "credentials").await,
        0,
        "a removed organization's secrets are deleted"
    );
    // The history outlives the organization.
    let audit = env.run(&["audit", &id.to_string(), "--output", "json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit.success().stdout).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "organization.removed",
            "organization.enabled",
            "organization.disabled",
            "credential.added",
            "credential.retired",
            "credential.added",
            "organization.added"
        ]
    );
}

const CSV_HEADER: &str = "name,tenant_id,client_id,secret,cloud,sharepoint_host,labels\n";

#[sqlx::test]
async fn import_csv_and_json(pool: PgPool) {
    let env = TestEnv::new(&pool);
    let csv = env.path("orgs.csv");
    write_file(
        &csv,
        &format!(
            "{CSV_HEADER}contoso,{TENANT_A},{CLIENT_A},Abc8Q~one,global,contoso.sharepoint.com,env=prod;tier=gold\nfabrikam,{TENANT_B},{CLIENT_B},Def8Q~two,usgov,,\n"
        ),
        0o600,
    );
    let outcome = env.run(&["org", "import", csv.to_str().unwrap()]);
    assert!(
        outcome
            .success()
            .stdout
            .contains("imported 2 organization(s)")
    );
    let json = env.path("orgs.json");
    write_file(
        &json,
        r#"[{"name": "northwind", "tenant_id": "c0ffee00-1234-4abc-8def-0123456789ab", "client_id": "deadbeef-1234-4abc-8def-0123456789ab", "secret": "Ghi8Q~three", "labels": {"env": "test"}}]"#,
        0o600,
    );
    env.run(&["org", "import", json.to_str().unwrap()])
        .success();
    let rows: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT name, cloud, labels FROM organizations ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        (
            "contoso".into(),
            "global".into(),
            serde_json::json!({"env": "prod", "tier": "gold"})
        )
    );
    assert_eq!(rows[1].1, "usgov");
    assert_eq!(rows[2].2, serde_json::json!({"env": "test"}));
    let imports: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'organization.added' AND details->>'source' = 'import'")
        .fetch_one(&pool).await.unwrap();
    assert_eq!(imports, 3);
}

#[sqlx::test]
async fn one_bad_row_rejects_the_whole_file_naming_row_and_field(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("existing", TENANT_A, CLIENT_A, "Abc8Q~x")
        .success();
    let good = format!("a,{TENANT_B},{CLIENT_B},Abc8Q~1,,,\n");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{CSV_HEADER}{good}b,not-a-guid,{CLIENT_B},Abc8Q~2,,,\n"),
            "row 2, field tenant_id: invalid tenant id",
        ),
        (
            format!("{CSV_HEADER}{good}b,{TENANT_B},{CLIENT_A},,,,\n"),
            "row 2, field secret: the client secret is",
        ),
        (
            format!("{CSV_HEADER}{good}a,{TENANT_A},{CLIENT_B},Abc8Q~2,,,\n"),
            "row 2, field name: the name a appears twice in the file",
        ),
        (
            format!(
                "{CSV_HEADER}{good}existing,c0ffee00-1234-4abc-8def-0123456789ab,{CLIENT_B},Abc8Q~2,,,\n"
            ),
            "row 2, field name: an organization named existing already exists",
        ),
        (
            format!("{CSV_HEADER}{good}b,{TENANT_A},{CLIENT_A},Abc8Q~2,,,\n"),
            "row 2, field client_id: tenant",
        ),
        (
            format!("{CSV_HEADER}{good}b,{TENANT_A},{CLIENT_B},Abc8Q~2,moon,,\n"),
            "row 2, field cloud: unknown cloud",
        ),
        (
            format!("{CSV_HEADER}{good}b,{TENANT_A},{CLIENT_B},Abc8Q~2,,,bad\n"),
            "row 2, field labels: invalid label",
        ),
        (
            format!("{CSV_HEADER}{good}b,{TENANT_A}\n"),
            "row 2 (line 3): expected 7 fields, found 2",
        ),
        (
            "name,tenant_id,client_id,secret,colour\nx,y,z,w,blue\n".into(),
            "unknown field `colour`",
        ),
    ];
    for (content, expected) in cases {
        let csv = env.path("orgs.csv");
        write_file(&csv, &content, 0o600);
        env.run(&["org", "import", csv.to_str().unwrap()])
            .fails_with(2, expected);
    }
    let json = env.path("orgs.json");
    write_file(
        &json,
        &format!(
            r#"[{{"name":"a","tenant_id":"{TENANT_B}","client_id":"{CLIENT_B}","secret":"Abc8Q~1"}},{{"name":"b","tenant_id":"{TENANT_A}","client_id":"nope","secret":"Abc8Q~2"}}]"#
        ),
        0o600,
    );
    env.run(&["org", "import", json.to_str().unwrap()])
        .fails_with(2, "entry 2, field client_id: invalid client id");
    write_file(&json, r#"[{"name":"a","tenant_id":"x"}]"#, 0o600);
    env.run(&["org", "import", json.to_str().unwrap()])
        .fails_with(2, "entry 1: missing field `client_id`");
    write_file(&json, r#"{"name":"a"}"#, 0o600);
    env.run(&["org", "import", json.to_str().unwrap()])
        .fails_with(2, "is not a JSON array of organizations");
    write_file(&json, "[]", 0o644);
    env.run(&["org", "import", json.to_str().unwrap()])
        .fails_with(2, "accessible to other users");

    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM organizations")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, ["existing"], "a rejected file must write nothing");
}

#[sqlx::test]
async fn names_are_unique_ignoring_case_and_migrate_names_old_clashes(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("adatum", TENANT_A, CLIENT_A, "Abc8Q~secret")
        .success();
    env.add_org("ADATUM", TENANT_B, CLIENT_B, "Abc8Q~secret")
        .fails_with(
            2,
            "an organization named adatum already exists (names may not differ only by case)",
        );
    assert_eq!(count(&pool, "organizations").await, 1);

    // A database from before the rule, holding names that differ only by case: migrate
    // names them and changes nothing until one is gone.
    sqlx::raw_sql(
        "DROP INDEX organizations_name_ci;
         DELETE FROM _sqlx_migrations WHERE version = 20261201000008;",
    )
    .execute(&pool)
    .await
    .unwrap();
    env.add_org("ADATUM", TENANT_B, CLIENT_B, "Abc8Q~secret")
        .fails_with(2, "already exists");
    sqlx::query("UPDATE organizations SET name = 'ADATUM' WHERE name = 'adatum'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO organizations (id, name, tenant_id, client_id, cloud)
         VALUES (gen_random_uuid(), 'adatum', gen_random_uuid(), gen_random_uuid(), 'global')
         ON CONFLICT DO NOTHING",
    )
    .execute(&pool)
    .await
    .unwrap();
    env.run(&["migrate"])
        .fails_with(2, "these differ only by case: ADATUM and adatum");
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = 20261201000008")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(applied, 0, "nothing was changed");
    sqlx::query("DELETE FROM organizations WHERE name = 'adatum'")
        .execute(&pool)
        .await
        .unwrap();
    env.run(&["migrate"]).success();
    env.add_org("Adatum", TENANT_B, CLIENT_B, "Abc8Q~secret")
        .fails_with(2, "names may not differ only by case");
}

#[sqlx::test]
async fn a_state_written_by_a_newer_version_reads_as_unknown(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, "Abc8Q~secret")
        .success();
    sqlx::query("UPDATE organization_status SET state = 'from_a_newer_version'")
        .execute(&pool)
        .await
        .unwrap();
    let status = env.exec(&["status", "--output", "json"]).await;
    status.success();
    let view: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(view["statuses"][0]["state"], "unknown", "{}", status.stdout);
    let list = env.exec(&["org", "list", "--output", "json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["state"], "unknown", "{}", list.stdout);
}
