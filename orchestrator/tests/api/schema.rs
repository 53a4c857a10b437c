//! Schema parity of the two migration dialects, `migrations/postgres/*.sql` and `migrations/sqlite/*.sql`.
//!
//! "One source" here: the schema is written twice, once per dialect, and neither file set is generated
//! from the other. What keeps them one schema is this test: on every CI run (`cargo test`, which runs it
//! in both of CI's test passes) it applies each set for real, with the crate's own `Db::migrate`, to a
//! fresh SQLite database and a fresh PostgreSQL database, reads back what the databases actually hold
//! (not the SQL text) and checks the two against each other: the same tables; in each, the same columns
//! in the same order with the same type (through the dialect mapping below), nullability and default;
//! the same primary key; the same unique indexes (by column list); the same named indexes; the same
//! foreign keys (columns, referenced table and columns, ON UPDATE/ON DELETE). A change made to one
//! dialect only fails here, with every difference listed in a sentence.
//!
//! It needs PostgreSQL: `TEST_DATABASE_URL` when set, otherwise postgres://postgres@127.0.0.1:5432/postgres.
//! PostgreSQL being unreachable is a failure in CI (`CI=true`) or when `TEST_DATABASE_URL` is set; on a laptop
//! without it the test says loudly that it checked nothing. CHECK constraints are not compared.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::db::{Backend, Db};
use sqlx::Row;

use crate::helpers::TestDb;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Differences that exist on purpose or that cannot be fixed any more (migrations that databases in
/// the field have applied are never edited), each exactly as the test words it, with the reason. An
/// entry whose difference has gone away fails the test too, so this list only shrinks.
const ALLOWED_DIFFERENCES: &[(&str, &str)] = &[
    // (difference, reason) — none today.
];

/// The dialect mapping: every column type the migrations use, in each dialect, to one portable type.
/// The migrations keep to a small portable set on purpose (see the header of `1_init.sql`): ids are
/// UUID text, times RFC 3339 UTC text, JSON text, money integer minor units and booleans BIGINT 0/1,
/// because the `sqlx::Any` driver cannot decode SQLite BOOLEAN columns. So there is no `uuid`,
/// `timestamptz`, `boolean`, `jsonb` or `bytea` on the PostgreSQL side to map; a type not listed here
/// fails the test, which then asks for a deliberate entry rather than guessing.
fn portable_type(backend: Backend, column: &RawColumn) -> Result<String, String> {
    let raw = column.raw_type.to_ascii_lowercase();
    let ty = match (backend, raw.as_str()) {
        (Backend::Postgres, "text") | (Backend::Sqlite, "text") => "text",
        // A 64-bit integer: PostgreSQL BIGINT; SQLite stores every INTEGER-affinity column as 64 bits.
        (Backend::Postgres, "bigint") | (Backend::Sqlite, "bigint") => "integer",
        // The generated row ids: PostgreSQL `BIGINT GENERATED ALWAYS AS IDENTITY`, SQLite
        // `INTEGER PRIMARY KEY AUTOINCREMENT` (the rowid; AUTOINCREMENT so an id is never reused,
        // as PostgreSQL's identity never reuses one). The `identity` flag is set per dialect below.
        (Backend::Sqlite, "integer") if column.identity => "integer",
        (Backend::Sqlite, "integer") => {
            return Err("a plain INTEGER column (not `INTEGER PRIMARY KEY AUTOINCREMENT`); the migrations use \
                 BIGINT for integers, or the mapping in tests/api/schema.rs needs an entry"
                .to_string());
        }
        _ => {
            return Err(format!(
                "of type `{}`, which the dialect mapping in tests/api/schema.rs does not know",
                column.raw_type
            ));
        }
    };
    Ok(if column.identity { format!("{ty} generated identity") } else { ty.to_string() })
}

/// A column as the database reports it.
struct RawColumn {
    name: String,
    raw_type: String,
    not_null: bool,
    default: Option<String>,
    /// PostgreSQL: an identity column. SQLite: the rowid alias of a table declared with AUTOINCREMENT.
    identity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    /// The portable type, and the dialect's own spelling for messages.
    ty: String,
    raw_type: String,
    not_null: bool,
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    columns: Vec<String>,
    table: String,
    references: Vec<String>,
    on_update: String,
    on_delete: String,
}

#[derive(Debug, Default)]
struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    /// Unique indexes and UNIQUE constraints (not the primary key's), by column list; `true` when partial.
    unique: BTreeSet<(Vec<String>, bool)>,
    /// Non-unique indexes, by name (they are named in `CREATE INDEX`): columns and partial.
    indexes: BTreeMap<String, (Vec<String>, bool)>,
    foreign_keys: BTreeSet<ForeignKey>,
}

type Schema = BTreeMap<String, Table>;

#[tokio::test]
async fn sqlite_and_postgres_migrations_define_the_same_schema() {
    // SQLite: a fresh file.
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("schema.db").display());
    let sqlite = Db::connect(&sqlite_url, 1).await.expect("open a fresh SQLite database");
    sqlite.migrate().await.expect("the SQLite migrations apply to a fresh database");

    // PostgreSQL: a fresh database on the server, dropped afterwards (by `TestDb`).
    let named = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let required = named.is_some() || std::env::var("CI").is_ok_and(|v| v == "true");
    let admin_url = named.unwrap_or_else(|| DEFAULT_PG_URL.to_string());
    let admin = match Db::connect(&admin_url, 1).await {
        Ok(db) => db,
        // A laptop running the README's test command on the embedded defaults: said, not hidden.
        Err(e) if !required => {
            eprintln!(
                "WARNING: schema parity NOT checked: PostgreSQL is unreachable at {admin_url} ({e}); CI \
                 (CI=true) and TEST_DATABASE_URL make this a failure"
            );
            return;
        }
        Err(e) => panic!(
            "the schema parity test needs PostgreSQL and it is unreachable at {admin_url}: {e}. Start it \
             (or set TEST_DATABASE_URL); in CI this test fails rather than skips, so drift cannot pass unseen."
        ),
    };
    assert_eq!(admin.backend(), Backend::Postgres, "TEST_DATABASE_URL must name a PostgreSQL server");
    let name = format!("lc_schema_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .expect("create the PostgreSQL test database");
    admin.close().await;
    let _guard = TestDb::Postgres { admin_url: admin_url.clone(), name: name.clone() };
    let pg_url = match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("the PostgreSQL URL must end in /<database>: {admin_url}"),
    };
    let postgres = Db::connect(&pg_url, 1).await.expect("connect to the fresh PostgreSQL database");
    postgres.migrate().await.expect("the PostgreSQL migrations apply to a fresh database");

    let mut problems = Vec::new();
    let sqlite_schema = sqlite_schema(&sqlite, &mut problems).await;
    let pg_schema = postgres_schema(&postgres, &mut problems).await;
    sqlite.close().await;
    postgres.close().await;
    assert!(!sqlite_schema.is_empty() && !pg_schema.is_empty(), "introspection found no tables");

    problems.extend(compare(&pg_schema, &sqlite_schema));
    let allowed: BTreeSet<&str> = ALLOWED_DIFFERENCES.iter().map(|(d, _)| *d).collect();
    let mut failures: Vec<String> = problems.iter().filter(|p| !allowed.contains(p.as_str())).cloned().collect();
    for gone in allowed.iter().filter(|a| !problems.iter().any(|p| p == *a)) {
        failures.push(format!(
            "The allowed difference \"{gone}\" no longer exists: remove it from ALLOWED_DIFFERENCES in tests/api/schema.rs."
        ));
    }
    assert!(
        failures.is_empty(),
        "migrations/postgres and migrations/sqlite define different schemas ({} difference(s)); change both \
         dialects together (a new migration in each), or, for a difference that must stay, add it with its reason \
         to ALLOWED_DIFFERENCES:\n- {}",
        failures.len(),
        failures.join("\n- ")
    );
}

async fn sqlite_schema(db: &Db, problems: &mut Vec<String>) -> Schema {
    let pool = db.pool();
    let tables = sqlx::query(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .expect("list SQLite tables");
    let mut schema = Schema::new();
    for t in tables {
        let table: String = t.get(0);
        let sql: String = t.get(1);
        let autoincrement = sql.to_ascii_uppercase().contains("AUTOINCREMENT");
        let mut out = Table::default();

        let cols =
            sqlx::query("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("SQLite pragma_table_info");
        let mut pk: Vec<(i64, String)> = Vec::new();
        let pk_columns = cols.iter().filter(|c| c.get::<i64, _>(4) > 0).count();
        for c in &cols {
            let name: String = c.get(0);
            let raw_type: String = c.get(1);
            let pk_pos: i64 = c.get(4);
            if pk_pos > 0 {
                pk.push((pk_pos, name.clone()));
            }
            // The rowid alias: the one column of an INTEGER PRIMARY KEY.
            let rowid = pk_columns == 1 && pk_pos == 1 && raw_type.eq_ignore_ascii_case("INTEGER");
            let raw = RawColumn {
                name,
                raw_type,
                // Dialect rule: PostgreSQL makes every primary key column NOT NULL; SQLite, by a documented
                // historical quirk, does so only for the rowid alias, yet its other key columns are the
                // same declaration (`TEXT PRIMARY KEY`). So a primary key column counts as NOT NULL here.
                not_null: c.get::<i64, _>(2) != 0 || pk_pos > 0,
                default: c.get::<Option<String>, _>(3),
                identity: rowid && autoincrement,
            };
            out.columns.push(column(Backend::Sqlite, &table, raw, problems));
        }
        pk.sort();
        out.primary_key = pk.into_iter().map(|(_, n)| n).collect();

        let indexes = sqlx::query("SELECT name, \"unique\", origin, partial FROM pragma_index_list($1)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .expect("SQLite pragma_index_list");
        for i in indexes {
            let index: String = i.get(0);
            let unique = i.get::<i64, _>(1) != 0;
            let origin: String = i.get(2);
            let partial = i.get::<i64, _>(3) != 0;
            if origin == "pk" {
                continue;
            }
            let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(&index)
                .fetch_all(pool)
                .await
                .expect("SQLite pragma_index_info")
                .iter()
                .map(|r| r.get::<Option<String>, _>(0).unwrap_or_else(|| "<expression>".into()))
                .collect();
            if unique {
                out.unique.insert((columns, partial));
            } else {
                out.indexes.insert(index, (columns, partial));
            }
        }

        let fks = sqlx::query(
            "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list($1) \
             ORDER BY id, seq",
        )
        .bind(&table)
        .fetch_all(pool)
        .await
        .expect("SQLite pragma_foreign_key_list");
        let mut by_id: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for f in fks {
            let fk = by_id.entry(f.get(0)).or_insert_with(|| ForeignKey {
                columns: vec![],
                table: f.get(1),
                references: vec![],
                on_update: f.get(4),
                on_delete: f.get(5),
            });
            fk.columns.push(f.get(2));
            // `REFERENCES t` without columns means t's primary key; the migrations always name them.
            fk.references.push(f.get::<Option<String>, _>(3).unwrap_or_else(|| "<primary key>".into()));
        }
        out.foreign_keys = by_id.into_values().collect();
        schema.insert(table, out);
    }
    schema
}

async fn postgres_schema(db: &Db, problems: &mut Vec<String>) -> Schema {
    let pool = db.pool();
    let mut schema = Schema::new();
    let tables = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .expect("list PostgreSQL tables");
    for t in tables {
        schema.insert(t.get(0), Table::default());
    }

    let cols = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, (is_nullable = 'NO')::int::bigint, \
                column_default::text, (is_identity = 'YES')::int::bigint \
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL information_schema.columns");
    for c in cols {
        let table: String = c.get(0);
        let raw = RawColumn {
            name: c.get(1),
            raw_type: c.get(2),
            not_null: c.get::<i64, _>(3) != 0,
            default: c.get::<Option<String>, _>(4),
            identity: c.get::<i64, _>(5) != 0,
        };
        let col = column(Backend::Postgres, &table, raw, problems);
        schema.entry(table).or_default().columns.push(col);
    }

    // Every index of the public tables, with its key columns in order (primary keys included).
    let indexes = sqlx::query(
        "SELECT t.relname::text, i.relname::text, ix.indisunique::int::bigint, ix.indisprimary::int::bigint, \
                (ix.indpred IS NOT NULL)::int::bigint, \
                array_to_string(ARRAY(SELECT coalesce(a.attname::text, '<expression>') \
                    FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                    LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                    ORDER BY k.ord), ',')::text \
         FROM pg_index ix \
         JOIN pg_class t ON t.oid = ix.indrelid \
         JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL pg_index");
    for i in indexes {
        let table: String = i.get(0);
        let index: String = i.get(1);
        let (unique, primary, partial) = (i.get::<i64, _>(2) != 0, i.get::<i64, _>(3) != 0, i.get::<i64, _>(4) != 0);
        let columns: Vec<String> = i.get::<String, _>(5).split(',').map(str::to_string).collect();
        let t = schema.entry(table).or_default();
        if primary {
            t.primary_key = columns;
        } else if unique {
            t.unique.insert((columns, partial));
        } else {
            t.indexes.insert(index, (columns, partial));
        }
    }

    let fks = sqlx::query(
        "SELECT cl.relname::text, \
                array_to_string(ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), ',')::text, \
                rf.relname::text, \
                array_to_string(ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                    JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord), ',')::text, \
                con.confupdtype::text, con.confdeltype::text \
         FROM pg_constraint con \
         JOIN pg_class cl ON cl.oid = con.conrelid \
         JOIN pg_class rf ON rf.oid = con.confrelid \
         JOIN pg_namespace n ON n.oid = cl.relnamespace \
         WHERE con.contype = 'f' AND n.nspname = 'public'",
    )
    .fetch_all(pool)
    .await
    .expect("PostgreSQL pg_constraint foreign keys");
    for f in fks {
        let table: String = f.get(0);
        let split = |s: String| s.split(',').map(str::to_string).collect::<Vec<_>>();
        let fk = ForeignKey {
            columns: split(f.get(1)),
            table: f.get(2),
            references: split(f.get(3)),
            on_update: pg_action(&f.get::<String, _>(4)),
            on_delete: pg_action(&f.get::<String, _>(5)),
        };
        schema.entry(table).or_default().foreign_keys.insert(fk);
    }
    schema
}

/// pg_constraint's one-letter referential actions, in SQLite's words.
fn pg_action(code: &str) -> String {
    match code {
        "a" => "NO ACTION",
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        other => other,
    }
    .to_string()
}

fn column(backend: Backend, table: &str, raw: RawColumn, problems: &mut Vec<String>) -> Column {
    let ty = portable_type(backend, &raw).unwrap_or_else(|why| {
        problems.push(format!("Column {table}.{} in {} is {why}.", raw.name, dialect(backend)));
        format!("unmapped {}", raw.raw_type)
    });
    Column {
        name: raw.name,
        ty,
        raw_type: raw.raw_type,
        not_null: raw.not_null,
        default: raw.default.as_deref().map(normalize_default),
    }
}

/// A default as written, without PostgreSQL's casts (`'x'::text` is SQLite's `'x'`).
fn normalize_default(default: &str) -> String {
    let mut s = default.trim();
    while let Some((head, tail)) = s.rsplit_once("::") {
        if tail.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_') {
            s = head.trim();
        } else {
            break;
        }
    }
    let s = s.trim_start_matches('(').trim_end_matches(')');
    s.to_string()
}

fn dialect(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
    }
}

fn list(cols: &[String]) -> String {
    format!("({})", cols.join(", "))
}

fn nullability(not_null: bool) -> &'static str {
    if not_null { "NOT NULL" } else { "nullable" }
}

fn describe_fk(fk: &ForeignKey) -> String {
    format!(
        "{} REFERENCES {} {} ON UPDATE {} ON DELETE {}",
        list(&fk.columns),
        fk.table,
        list(&fk.references),
        fk.on_update,
        fk.on_delete
    )
}

fn partial(p: bool) -> &'static str {
    if p { " (partial)" } else { "" }
}

/// Every difference between the two schemas, one sentence each.
fn compare(pg: &Schema, lite: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for name in pg.keys().filter(|t| !lite.contains_key(*t)) {
        out.push(format!("Table {name} exists in PostgreSQL but not in SQLite."));
    }
    for name in lite.keys().filter(|t| !pg.contains_key(*t)) {
        out.push(format!("Table {name} exists in SQLite but not in PostgreSQL."));
    }
    for (name, p) in pg {
        let Some(s) = lite.get(name) else { continue };
        let p_names: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        let s_names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
        for c in p_names.iter().filter(|c| !s_names.contains(c)) {
            out.push(format!("Column {name}.{c} exists in PostgreSQL but not in SQLite."));
        }
        for c in s_names.iter().filter(|c| !p_names.contains(c)) {
            out.push(format!("Column {name}.{c} exists in SQLite but not in PostgreSQL."));
        }
        let common_p: Vec<&str> = p_names.iter().copied().filter(|c| s_names.contains(c)).collect();
        let common_s: Vec<&str> = s_names.iter().copied().filter(|c| p_names.contains(c)).collect();
        if common_p != common_s {
            out.push(format!(
                "Table {name} has its columns in a different order: PostgreSQL ({}), SQLite ({}).",
                common_p.join(", "),
                common_s.join(", ")
            ));
        }
        for pc in &p.columns {
            let Some(sc) = s.columns.iter().find(|c| c.name == pc.name) else { continue };
            let col = format!("{name}.{}", pc.name);
            if pc.ty != sc.ty {
                out.push(format!(
                    "Column {col} has type {} ({}) in PostgreSQL but {} ({}) in SQLite.",
                    pc.raw_type, pc.ty, sc.raw_type, sc.ty
                ));
            }
            if pc.not_null != sc.not_null {
                out.push(format!(
                    "Column {col} is {} in PostgreSQL but {} in SQLite.",
                    nullability(pc.not_null),
                    nullability(sc.not_null)
                ));
            }
            if pc.default != sc.default {
                let show = |d: &Option<String>| d.clone().map_or("no default".to_string(), |d| format!("default {d}"));
                out.push(format!(
                    "Column {col} has {} in PostgreSQL but {} in SQLite.",
                    show(&pc.default),
                    show(&sc.default)
                ));
            }
        }
        if p.primary_key != s.primary_key {
            out.push(format!(
                "Table {name} has primary key {} in PostgreSQL but {} in SQLite.",
                list(&p.primary_key),
                list(&s.primary_key)
            ));
        }
        for (cols, part) in p.unique.difference(&s.unique) {
            out.push(format!(
                "Table {name} has a unique index on {}{} in PostgreSQL but not in SQLite.",
                list(cols),
                partial(*part)
            ));
        }
        for (cols, part) in s.unique.difference(&p.unique) {
            out.push(format!(
                "Table {name} has a unique index on {}{} in SQLite but not in PostgreSQL.",
                list(cols),
                partial(*part)
            ));
        }
        for (index, (cols, part)) in &p.indexes {
            match s.indexes.get(index) {
                None => out.push(format!("Index {index} on {name} exists in PostgreSQL but not in SQLite.")),
                Some(other) if other != &(cols.clone(), *part) => out.push(format!(
                    "Index {index} on {name} covers {}{} in PostgreSQL but {}{} in SQLite.",
                    list(cols),
                    partial(*part),
                    list(&other.0),
                    partial(other.1)
                )),
                Some(_) => {}
            }
        }
        for index in s.indexes.keys().filter(|i| !p.indexes.contains_key(*i)) {
            out.push(format!("Index {index} on {name} exists in SQLite but not in PostgreSQL."));
        }
        for fk in p.foreign_keys.difference(&s.foreign_keys) {
            out.push(format!("Table {name} has foreign key {} in PostgreSQL but not in SQLite.", describe_fk(fk)));
        }
        for fk in s.foreign_keys.difference(&p.foreign_keys) {
            out.push(format!("Table {name} has foreign key {} in SQLite but not in PostgreSQL.", describe_fk(fk)));
        }
    }
    out
}
