// pgJDBC cases against a PostgreSQL-wire server, one case per run:
//
//   javac -d OUT EddyJdbc.java && java -cp OUT:postgresql.jar EddyJdbc <jdbc-url> <case>
//
// tests/clients/test_jdbc.py creates the table (jdbc_t), compiles this file and runs every case
// against eddy. Each case asserts what PostgreSQL itself answers. Exit code 0 means the case
// passed ("ok <case>" on stdout), 1 that a check or a statement failed (the SQLState is
// printed), 2 a usage error. No assert keyword: the checks run without -ea.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;

public class EddyJdbc {
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    static void check(boolean cond, String what) {
        if (!cond) throw new CheckFailed(what);
    }

    static void checkEq(Object want, Object got, String what) {
        if (!Objects.equals(want, got)) {
            throw new CheckFailed(what + ": want <" + want + ">, got <" + got + ">");
        }
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            check(rs.next(), "a row from " + sql);
            String v = rs.getString(1);
            check(!rs.next(), "one row from " + sql);
            return v;
        }
    }

    interface Case {
        void run(Connection c) throws Exception;
    }

    // Rows 1 and 2 of jdbc_t (row 3 is ('SI', NULL, NULL, NULL)); see tests/clients/test_jdbc.py.
    static final String[] SYMS = {"CL", "GC"};
    static final String[] TS = {"2024-01-01T10:00:00.123Z", "2024-06-30T23:59:59Z"};
    static final double[] PRICES = {71.5, 2000.25};

    static final Map<String, Case> CASES = new LinkedHashMap<>();

    static {
        // pgJDBC's start-up: the StartupMessage carries extra_float_digits=2 and the application
        // name; it then reads server_version, DateStyle, client_encoding and friends.
        CASES.put("connect", c -> {
            check(c.isValid(5), "isValid");
            DatabaseMetaData md = c.getMetaData();
            checkEq("PostgreSQL", md.getDatabaseProductName(), "getDatabaseProductName");
            check(md.getDatabaseMajorVersion() >= 9, "getDatabaseMajorVersion >= 9, got " + md.getDatabaseMajorVersion());
            checkEq("eddy-jdbc-tests", one(c, "SHOW application_name"), "SHOW application_name");
            checkEq("eddy-jdbc-tests", c.getClientInfo("ApplicationName"), "getClientInfo(ApplicationName)");
            c.setClientInfo("ApplicationName", "eddy-jdbc-renamed");  // SET application_name = ...
            checkEq("eddy-jdbc-renamed", one(c, "SHOW application_name"), "SHOW application_name after setClientInfo");
            checkEq("3", one(c, "SHOW extra_float_digits"), "SHOW extra_float_digits");
            checkEq("1", one(c, "SELECT 1"), "SELECT 1");
            System.out.println("driver " + md.getDriverVersion() + ", server " + md.getDatabaseProductVersion());
        });

        CASES.put("metadata_tables", c -> {
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet rs = md.getTables(null, null, "jdbc_t", new String[] {"TABLE"})) {
                check(rs.next(), "getTables(jdbc_t) returned no row");
                checkEq("jdbc_t", rs.getString("TABLE_NAME"), "TABLE_NAME");
                checkEq("public", rs.getString("TABLE_SCHEM"), "TABLE_SCHEM");
                checkEq("TABLE", rs.getString("TABLE_TYPE"), "TABLE_TYPE");
                check(!rs.next(), "one table named jdbc_t");
            }
            // A pattern over every table: jdbc_t is among them, and no system table is.
            List<String> names = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) names.add(rs.getString("TABLE_NAME"));
            }
            check(names.contains("jdbc_t"), "getTables(public, %) lists jdbc_t: " + names);
        });

        CASES.put("metadata_columns", c -> {
            DatabaseMetaData md = c.getMetaData();
            List<String> got = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, null, "jdbc_t", null)) {
                while (rs.next()) {
                    got.add(rs.getInt("ORDINAL_POSITION") + " " + rs.getString("COLUMN_NAME") + " "
                            + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE") + " "
                            + rs.getString("IS_NULLABLE"));
                }
            }
            checkEq(List.of(
                    "1 id int8 " + Types.BIGINT + " NO",
                    "2 sym text " + Types.VARCHAR + " NO",
                    "3 ts timestamptz " + Types.TIMESTAMP + " YES",
                    "4 price float8 " + Types.DOUBLE + " YES",
                    "5 ok bool " + Types.BIT + " YES"), got, "getColumns(jdbc_t)");
        });

        // Run 10 times: pgJDBC switches to a named server-side statement after prepareThreshold
        // (5) executions, and then asks for binary results of int8, float8 and timestamptz.
        CASES.put("prepared_statement", c -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT id, sym, ts, price FROM jdbc_t WHERE id = ?")) {
                org.postgresql.PGStatement pg = ps.unwrap(org.postgresql.PGStatement.class);
                checkEq(5, pg.getPrepareThreshold(), "prepareThreshold");
                for (int i = 0; i < 10; i++) {
                    long id = 1 + (i % 2);
                    ps.setLong(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "run " + (i + 1) + ": a row for id " + id);
                        checkEq(id, rs.getLong("id"), "run " + (i + 1) + ": id");
                        checkEq(SYMS[(int) id - 1], rs.getString("sym"), "run " + (i + 1) + ": sym");
                        checkEq(Instant.parse(TS[(int) id - 1]), rs.getTimestamp("ts").toInstant(),
                                "run " + (i + 1) + ": ts");
                        checkEq(PRICES[(int) id - 1], rs.getDouble("price"), "run " + (i + 1) + ": price");
                        check(!rs.next(), "run " + (i + 1) + ": one row");
                    }
                    if (i >= 5) check(pg.isUseServerPrepare(), "run " + (i + 1) + ": server-side prepared");
                }
                ps.setLong(1, 42);
                try (ResultSet rs = ps.executeQuery()) {
                    check(!rs.next(), "no row for id 42");
                }
            }
        });

        CASES.put("getters", c -> {
            try (Statement st = c.createStatement();
                 ResultSet rs = st.executeQuery("SELECT id, sym, ts, price, ok FROM jdbc_t ORDER BY id")) {
                check(rs.next(), "row 1");
                checkEq(1L, rs.getLong(1), "getLong");
                checkEq("1", rs.getString(1), "getString of int8");
                checkEq("CL", rs.getString("sym"), "getString");
                Timestamp ts = rs.getTimestamp("ts");
                checkEq(Instant.parse(TS[0]), ts.toInstant(), "getTimestamp");
                checkEq(OffsetDateTime.of(2024, 1, 1, 10, 0, 0, 123_000_000, ZoneOffset.UTC).toInstant(),
                        rs.getObject("ts", OffsetDateTime.class).toInstant(), "getObject(OffsetDateTime)");
                checkEq(71.5, rs.getDouble("price"), "getDouble");
                checkEq(true, rs.getBoolean("ok"), "getBoolean");
                check(rs.next(), "row 2");
                checkEq(2000.25, rs.getDouble("price"), "getDouble row 2");
                checkEq(false, rs.getBoolean("ok"), "getBoolean row 2");
                check(rs.next(), "row 3");
                checkEq(3L, rs.getLong("id"), "getLong row 3");
                check(rs.getTimestamp("ts") == null, "NULL timestamptz as null");
                checkEq(0.0, rs.getDouble("price"), "getDouble of NULL");
                check(rs.wasNull(), "wasNull after NULL double");
                check(rs.getObject("ok") == null, "NULL bool as null");
                check(!rs.next(), "three rows");
            }
        });

        CASES.put("error_sqlstate", c -> {
            try (Statement st = c.createStatement()) {
                try {
                    st.executeQuery("SELECT * FROM jdbc_no_such_table");
                    throw new CheckFailed("no error for a missing table");
                } catch (SQLException e) {
                    checkEq("42P01", e.getSQLState(), "SQLState of a missing table (" + e.getMessage() + ")");
                }
                checkEq("1", one(c, "SELECT 1"), "the connection is usable after the error");
            }
            // In a transaction: the error aborts it (25P02) until rollback.
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                try {
                    st.executeQuery("SELECT * FROM jdbc_no_such_table");
                    throw new CheckFailed("no error for a missing table in a transaction");
                } catch (SQLException e) {
                    checkEq("42P01", e.getSQLState(), "SQLState in a transaction (" + e.getMessage() + ")");
                }
                try {
                    st.executeQuery("SELECT 1");
                    throw new CheckFailed("no error in an aborted transaction");
                } catch (SQLException e) {
                    checkEq("25P02", e.getSQLState(), "SQLState in an aborted transaction (" + e.getMessage() + ")");
                }
                c.rollback();
                checkEq("1", one(c, "SELECT 1"), "usable after rollback");
                c.commit();
            }
        });

        CASES.put("transaction", c -> {
            c.setAutoCommit(false);  // pgJDBC sends BEGIN before the first statement
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (id, sym, ts, price, ok) VALUES (?, ?, ?, ?, ?)")) {
                ps.setLong(1, 100);
                ps.setString(2, "TX");
                ps.setTimestamp(3, Timestamp.from(Instant.parse("2024-03-01T00:00:00Z")));
                ps.setDouble(4, 1.25);
                ps.setBoolean(5, true);
                checkEq(1, ps.executeUpdate(), "executeUpdate count");
            }
            c.commit();
            c.setAutoCommit(true);
            checkEq("TX", one(c, "SELECT sym FROM jdbc_t WHERE id = 100"), "the committed row");
        });
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--list")) {
            for (String name : CASES.keySet()) System.out.println(name);
            return;
        }
        if (args.length != 2 || !CASES.containsKey(args[1])) {
            System.err.println("usage: java EddyJdbc <jdbc-url> <case>; cases: " + CASES.keySet());
            System.exit(2);
        }
        Properties props = new Properties();
        props.setProperty("ApplicationName", "eddy-jdbc-tests");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        try (Connection c = DriverManager.getConnection(args[0], props)) {
            CASES.get(args[1]).run(c);
            System.out.println("ok " + args[1]);
        } catch (SQLException e) {
            System.err.println("FAILED " + args[1] + ": SQLState " + e.getSQLState() + ": " + e.getMessage());
            e.printStackTrace();
            System.exit(1);
        } catch (CheckFailed e) {
            System.err.println("FAILED " + args[1] + ": " + e.getMessage());
            e.printStackTrace();
            System.exit(1);
        }
    }
}
