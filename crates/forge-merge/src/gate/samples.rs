//! Whole outputs of the common test runners, written from their documented formats, and what
//! the gate makes of them (counts, or the exit code and last line for output it does not know).

use super::counts::parse_test_counts;
use super::{CommandReport, CommandStatus, GateReport, TestCounts};

#[allow(clippy::unnecessary_wraps)] // compared with what the parser returns
fn counts(passed: u64, failed: u64, skipped: u64) -> Option<TestCounts> {
    Some(TestCounts {
        passed,
        failed,
        skipped,
    })
}

const CARGO: &str = r"   Compiling demo v0.1.0 (/tmp/demo)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.52s
     Running unittests src/lib.rs (target/debug/deps/demo-1b2c3d4e5f6a7b8c)

running 3 tests
test tests::adds ... ok
test tests::slow ... ignored
test tests::subtracts ... FAILED

failures:

---- tests::subtracts stdout ----

thread 'tests::subtracts' panicked at src/lib.rs:14:9:
assertion `left == right` failed
  left: 1
 right: 2
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


failures:
    tests::subtracts

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--lib`
";

const PYTEST: &str = r"============================= test session starts ==============================
platform linux -- Python 3.12.3, pytest-8.3.2, pluggy-1.5.0
rootdir: /tmp/proj
collected 5 items

tests/test_math.py ..F.s                                                 [100%]

=================================== FAILURES ===================================
_________________________________ test_divide __________________________________

    def test_divide():
>       assert divide(1, 0) == 0
E       ZeroDivisionError: division by zero

tests/test_math.py:12: ZeroDivisionError
=========================== short test summary info ============================
FAILED tests/test_math.py::test_divide - ZeroDivisionError: division by zero
==================== 1 failed, 3 passed, 1 skipped in 0.04s ====================
";

const JEST: &str = r" FAIL  src/sum.test.js
  ● sum › adds negative numbers

    expect(received).toBe(expected) // Object.is equality

    Expected: -3
    Received: 3

      at Object.toBe (src/sum.test.js:8:25)

 PASS  src/app.test.js

Test Suites: 1 failed, 1 passed, 2 total
Tests:       1 failed, 1 skipped, 4 passed, 6 total
Snapshots:   0 total
Time:        0.512 s, estimated 1 s
Ran all test suites.
";

const VITEST: &str = " ❯ src/sum.test.ts (3 tests | 1 failed) 5ms
   × sum > adds negatives 3ms
     → expected 3 to be -3

⎯⎯⎯⎯⎯⎯⎯ Failed Tests 1 ⎯⎯⎯⎯⎯⎯⎯

 FAIL  src/sum.test.ts > sum > adds negatives
AssertionError: expected 3 to be -3

 Test Files  1 failed | 1 passed (2)
      Tests  1 failed | 4 passed | 1 skipped (6)
   Start at  10:12:01
   Duration  312ms (transform 20ms, setup 0ms, collect 30ms, tests 5ms, environment 0ms, prepare 60ms)
";

const GO_VERBOSE: &str = "=== RUN   TestAdd
--- PASS: TestAdd (0.00s)
=== RUN   TestDiv
    math_test.go:14: got 1, want 0
--- FAIL: TestDiv (0.00s)
=== RUN   TestSkip
    math_test.go:18: not on linux
--- SKIP: TestSkip (0.00s)
FAIL
exit status 1
FAIL\texample.com/math\t0.002s
";

const NODE_SPEC: &str = "✔ adds (0.5ms)
✖ divides (1.2ms)
  AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:

  1 !== 0

﹣ skipped one (0.1ms) # SKIP
ℹ tests 3
ℹ suites 0
ℹ pass 1
ℹ fail 1
ℹ cancelled 0
ℹ skipped 1
ℹ todo 0
ℹ duration_ms 45.1
";

const NODE_TAP: &str = "TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 0.5
  ...
# Subtest: divides
not ok 2 - divides
  ---
  duration_ms: 1.2
  failureType: 'testCodeFailure'
  ...
1..2
# tests 2
# suites 0
# pass 1
# fail 1
# cancelled 0
# skipped 0
# todo 0
# duration_ms 40.2
";

#[test]
fn whole_outputs_of_each_runner() {
    assert_eq!(parse_test_counts(CARGO), counts(1, 1, 1));
    assert_eq!(parse_test_counts(PYTEST), counts(3, 1, 1));
    assert_eq!(parse_test_counts(JEST), counts(4, 1, 1));
    assert_eq!(parse_test_counts(VITEST), counts(4, 1, 1));
    assert_eq!(parse_test_counts(GO_VERBOSE), counts(1, 1, 1));
    assert_eq!(parse_test_counts(NODE_SPEC), counts(1, 1, 1));
    assert_eq!(parse_test_counts(NODE_TAP), counts(1, 1, 0));
    assert_eq!(
        parse_test_counts("checking...\nResult: 12 passed, 0 failed\n"),
        counts(12, 0, 0)
    );
}

#[test]
fn output_of_an_unknown_runner_shows_the_exit_code_and_its_last_line() {
    let make = "cc -c main.c\nmain.c:3:1: error: expected ';' before '}' token\nmake: *** [Makefile:3: all] Error 1\n\n";
    assert_eq!(parse_test_counts(make), None);
    let report = GateReport {
        commands: vec![CommandReport {
            name: "make".into(),
            command: "make".into(),
            status: CommandStatus::Failed { code: 2 },
            duration_ms: 10,
            output: make.into(),
            output_truncated: false,
            tests: None,
        }],
        duration_ms: 10,
    };
    assert_eq!(
        report.summary(),
        "`make` failed (exit 2): make: *** [Makefile:3: all] Error 1"
    );
    let counted = GateReport {
        commands: vec![CommandReport {
            name: "cargo test".into(),
            command: "cargo test".into(),
            status: CommandStatus::Failed { code: 101 },
            duration_ms: 10,
            tests: parse_test_counts(CARGO),
            output: CARGO.into(),
            output_truncated: false,
        }],
        duration_ms: 10,
    };
    assert_eq!(
        counted.summary(),
        "`cargo test` failed (exit 101): 1 of 2 tests failed"
    );
}
