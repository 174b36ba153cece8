//! Secrets at rest: a database dump holds none, ciphertexts are bound to their rows,
//! and the master key can be replaced.

use sqlx::PgPool;

use crate::support::*;

const SECRET_A: &str = "Abc8Q~Zq3xV9mW2kL7pR4tY6uI1oP5aS8dF0gH";
const SECRET_B: &str = "Xyz8Q~Nb6vC4xZ2lK9jH7gF5dS3aP1oI8uY6tR";

pub fn pg_dump(env: &TestEnv) -> String {
    let output = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(&env.database_url)
        .output()
        .expect("pg_dump is installed (scripts/test installs postgresql-client)");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[sqlx::test]
async fn a_database_dump_contains_no_secret(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, SECRET_A)
        .success();
    env.run_with_stdin(&["org", "set-secret", "contoso"], SECRET_B)
        .success();
    let dump = pg_dump(&env);
    assert!(dump.contains("contoso"), "the dump has the data");
    for secret in [SECRET_A, SECRET_B] {
        assert!(!dump.contains(secret), "pg_dump contains a secret");
        // Not in any encoding an accident might produce either.
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!dump.contains(&hex), "pg_dump contains a secret as hex");
        // Not even a long piece of it (the 3-character hint is Microsoft's own, and public).
        assert!(
            !dump.contains(&secret[3..]),
            "pg_dump contains most of a secret"
        );
    }
}

#[sqlx::test]
async fn a_ciphertext_copied_into_another_row_does_not_open(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, SECRET_A)
        .success();
    env.add_org("fabrikam", TENANT_B, CLIENT_B, SECRET_B)
        .success();
    // An attacker with write access to the table swaps contoso's secret into fabrikam's row.
    sqlx::query(
        "UPDATE credentials SET secret_sealed = (SELECT secret_sealed FROM credentials c
            JOIN organizations o ON o.id = c.organization_id WHERE o.name = 'contoso')
         WHERE organization_id = (SELECT id FROM organizations WHERE name = 'fabrikam')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Re-sealing opens every secret, so it finds the tampered row, refuses, and changes nothing.
    let new_key = env.path("new.key");
    env.run(&["key", "generate", "--out", new_key.to_str().unwrap()])
        .success();
    env.write_config_with_keys(&new_key, &[&env.key_path], "");
    let sealed_before: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT secret_sealed FROM credentials ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    env.run(&["key", "rotate"]).fails_with(
        1,
        "does not open: it was tampered with or belongs to another row",
    );
    let sealed_after: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT secret_sealed FROM credentials ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        sealed_before, sealed_after,
        "a failed key rotation changed rows"
    );
}

#[sqlx::test]
async fn the_master_key_can_be_replaced(pool: PgPool) {
    let env = TestEnv::new(&pool);
    env.add_org("contoso", TENANT_A, CLIENT_A, SECRET_A)
        .success();
    env.add_org("fabrikam", TENANT_B, CLIENT_B, SECRET_B)
        .success();
    let old_key = env.key_path.clone();
    let new_key = env.path("new.key");
    let generated = env.run(&["key", "generate", "--out", new_key.to_str().unwrap()]);
    let new_id = generated
        .success()
        .stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    // A key file is never overwritten.
    env.run(&["key", "generate", "--out", new_key.to_str().unwrap()])
        .fails_with(1, "cannot create key file");

    env.write_config_with_keys(&new_key, &[&old_key], "");
    let rotate = env.run(&["key", "rotate"]);
    assert!(
        rotate
            .success()
            .stdout
            .contains(&format!("re-sealed 2 secret(s) under master key {new_id}")),
        "{rotate:?}"
    );
    let key_ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT secret_key_id FROM credentials")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(key_ids, vec![new_id.clone()]);
    assert_eq!(
        sqlx::query_scalar::<_, String>(
            "SELECT details->>'to_key' FROM audit_log WHERE action = 'master_key.rotated'"
        )
        .fetch_one(&pool)
        .await
        .unwrap(),
        new_id
    );

    // The old key can go: every secret opens with the new one alone.
    env.write_config_with_keys(&new_key, &[], "");
    let status = env.run(&["key", "status"]);
    assert!(
        status.success().stdout.contains("2 secret(s) open"),
        "{status:?}"
    );
    // With only the old key, nothing opens, and the command says which key is missing.
    env.write_config_with_keys(&old_key, &[], "");
    env.run(&["key", "status"]).fails_with(
        1,
        &format!("sealed with master key {new_id}, which is not configured"),
    );
}
