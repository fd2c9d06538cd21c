//! The one description of the checkpoint table's columns: their names in the order every read
//! decodes them, the type each is bound as, and the array type a group or batch binds it as.
//! The column lists of every statement, the parameter types of every save, upsert, batch and
//! group, and the order `state::chain` decodes a row in derive from it; the tables each layout
//! creates (`migrations::checkpoint_columns!`) are held to it by a test.

use tokio_postgres::types::Type;

/// One column: its name as written in SQL, its type as a cast (`text`, `jsonb`, ...), and the
/// types it is bound as, alone and as an array.
#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub cast: &'static str,
    pub param: Type,
    pub array: Type,
}

/// `describe! { checkpoint: ...; storage: ... }` defines the lists of names as constants (for
/// `concat!` and `format!`), and the columns.
macro_rules! describe {
    (
        checkpoint: $first:literal $first_cast:literal $first_param:ident $first_array:ident
            $(, $name:literal $cast:literal $param:ident $array:ident)*;
        storage: $s_first:literal $s_first_cast:literal $s_first_param:ident $s_first_array:ident
            $(, $s_name:literal $s_cast:literal $s_param:ident $s_array:ident)*
    ) => {
        /// The checkpoint's own columns, in the order every read decodes them.
        pub(crate) const COLUMNS: &str = concat!($first $(, ", ", $name)*);
        /// The columns that say how the state is stored.
        pub(crate) const STORAGE_COLUMNS: &str = concat!($s_first $(, ", ", $s_name)*);
        /// Every column, as every read selects them: the checkpoint's, then the storage's.
        pub(crate) const READ_COLUMNS: &str =
            concat!($first $(, ", ", $name)*, ", ", $s_first $(, ", ", $s_name)*);
        /// The checkpoint's columns.
        pub(crate) const CHECKPOINT: &[Column] = &[
            Column { name: $first, cast: $first_cast, param: Type::$first_param, array: Type::$first_array },
            $(Column { name: $name, cast: $cast, param: Type::$param, array: Type::$array },)*
        ];
        /// The storage columns.
        pub(crate) const STORAGE: &[Column] = &[
            Column { name: $s_first, cast: $s_first_cast, param: Type::$s_first_param, array: Type::$s_first_array },
            $(Column { name: $s_name, cast: $s_cast, param: Type::$s_param, array: Type::$s_array },)*
        ];
    };
}

describe! {
    checkpoint:
        "id" "text" TEXT TEXT_ARRAY,
        "execution_id" "text" TEXT TEXT_ARRAY,
        "node_name" "text" TEXT TEXT_ARRAY,
        "state" "jsonb" JSONB JSONB_ARRAY,
        "metadata" "jsonb" JSONB JSONB_ARRAY,
        "\"timestamp\"" "timestamptz" TIMESTAMPTZ TIMESTAMPTZ_ARRAY,
        "version" "int8" INT8 INT8_ARRAY,
        "parent_id" "text" TEXT TEXT_ARRAY;
    storage:
        "payload" "bytea" BYTEA BYTEA_ARRAY,
        "base_version" "int8" INT8 INT8_ARRAY,
        "base_hash" "int8" INT8 INT8_ARRAY,
        "state_hash" "int8" INT8 INT8_ARRAY,
        "depth" "int4" INT4 INT4_ARRAY
}

/// How many columns every read selects ([`READ_COLUMNS`]).
pub(crate) const READ_WIDTH: usize = CHECKPOINT.len() + STORAGE.len();

/// The position of the column `name` in [`READ_COLUMNS`].
#[cfg(test)]
pub(crate) fn read_index(name: &str) -> Option<usize> {
    CHECKPOINT
        .iter()
        .chain(STORAGE)
        .position(|c| c.name == name)
}

/// The columns of `names`, in that order; a name not described is a bug of this crate, so it
/// is found by the unit tests, and skipped here rather than panicking.
pub(crate) fn pick(names: &[&str]) -> Vec<&'static Column> {
    names
        .iter()
        .filter_map(|n| CHECKPOINT.iter().chain(STORAGE).find(|c| c.name == *n))
        .collect()
}

/// The types `columns` are bound as, one parameter each.
pub(crate) fn params(columns: &[&Column]) -> Vec<Type> {
    columns.iter().map(|c| c.param.clone()).collect()
}

/// The types `columns` are bound as, one array each.
pub(crate) fn arrays(columns: &[&Column]) -> Vec<Type> {
    columns.iter().map(|c| c.array.clone()).collect()
}

/// `$first::cast, $first+1::cast, ...` for `columns`: parameters cast to their column's type
/// (Citus sends an `INSERT … SELECT` to a shard as text, where a bare `$1` has no type).
pub(crate) fn typed(columns: &[&Column], first: usize) -> String {
    casts(columns, first, "")
}

/// `$first::cast[], ...` for `columns`: the arrays a group or batch binds, for `unnest`.
pub(crate) fn typed_arrays(columns: &[&Column], first: usize) -> String {
    casts(columns, first, "[]")
}

fn casts(columns: &[&Column], first: usize, suffix: &str) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}{suffix}", first + i, c.cast))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lists_follow_the_columns() {
        let names: Vec<&str> = CHECKPOINT.iter().chain(STORAGE).map(|c| c.name).collect();
        assert_eq!(READ_COLUMNS, names.join(", "));
        assert_eq!(
            format!("{COLUMNS}, {STORAGE_COLUMNS}"),
            READ_COLUMNS,
            "the checkpoint's columns, then the storage's"
        );
        assert_eq!(READ_WIDTH, 13);
        assert_eq!(read_index("version"), Some(6));
        assert_eq!(read_index("depth"), Some(12));
        assert_eq!(read_index("nope"), None);
    }

    #[test]
    fn params_and_arrays_agree_with_the_casts() {
        for c in CHECKPOINT.iter().chain(STORAGE) {
            assert_eq!(c.param.name(), c.cast, "{}", c.name);
            assert_eq!(c.array.name(), format!("_{}", c.cast), "{}", c.name);
        }
        let picked = pick(&["id", "payload", "depth"]);
        assert_eq!(params(&picked), vec![Type::TEXT, Type::BYTEA, Type::INT4]);
        assert_eq!(
            arrays(&picked),
            vec![Type::TEXT_ARRAY, Type::BYTEA_ARRAY, Type::INT4_ARRAY]
        );
        assert_eq!(typed(&picked, 3), "$3::text, $4::bytea, $5::int4");
        assert_eq!(
            typed_arrays(&picked, 1),
            "$1::text[], $2::bytea[], $3::int4[]"
        );
    }

    /// The tables every layout creates (`migrations::checkpoint_columns!`) have exactly these
    /// columns, in this order, with these types.
    #[test]
    fn the_created_tables_have_the_described_columns() {
        let ddl = crate::schema::migrations::CHECKPOINT_COLUMNS_DDL;
        let created: Vec<(String, String)> = ddl
            .split(',')
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, rest) = line.split_once(' ').expect("a name and a type");
                let ty = rest.split_whitespace().next().expect("a type");
                (name.to_owned(), ty.to_ascii_lowercase())
            })
            .collect();
        let sql_type = |cast: &str| match cast {
            "int8" => "bigint".to_owned(),
            "int4" => "integer".to_owned(),
            other => other.to_owned(),
        };
        let described: Vec<(String, String)> = CHECKPOINT
            .iter()
            .chain(STORAGE)
            .map(|c| (c.name.to_owned(), sql_type(c.cast)))
            .collect();
        assert_eq!(created, described);
    }
}
