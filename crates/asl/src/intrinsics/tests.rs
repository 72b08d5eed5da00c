use super::*;
use crate::path::Vars;
use serde_json::json;

fn run_in(expr: &str, input: &Value, ctx: &Value, vars: &Vars) -> Result<Value, StatesError> {
    Intrinsic::parse(expr)
        .unwrap_or_else(|e| panic!("{e}"))
        .eval(&Scope::new(input, ctx, vars))
}

fn run(expr: &str, input: Value) -> Result<Value, StatesError> {
    run_in(expr, &input, &json!({}), &Vars::new())
}

fn ok(expr: &str, input: Value) -> Value {
    run(expr, input).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn fails(expr: &str, input: Value) -> StatesError {
    match run(expr, input) {
        Ok(v) => panic!("{expr} should fail, got {v}"),
        Err(e) => e,
    }
}

fn intrinsic_failure(expr: &str, input: Value, needle: &str) {
    let e = fails(expr, input);
    assert_eq!(e.error, "States.IntrinsicFailure", "{expr}: {e}");
    assert!(
        e.cause.starts_with(&format!("The function '{expr}' had the following error: ")),
        "{}",
        e.cause
    );
    assert!(e.cause.contains(needle), "{expr}: '{}' lacks '{needle}'", e.cause);
}

fn parse_err(expr: &str, needle: &str) {
    match Intrinsic::parse(expr) {
        Ok(i) => panic!("{expr} should not parse: {i:?}"),
        Err(e) => assert!(e.contains(needle), "{expr}: '{e}' lacks '{needle}'"),
    }
}

// ---- parsing ---------------------------------------------------------------------------

#[test]
fn parse_rejects_syntax_errors() {
    parse_err("States.Nope(1)", "unknown intrinsic function 'States.Nope'");
    parse_err("Foo.Array(1)", "unknown intrinsic function 'Foo.Array'");
    parse_err("States.Array(1", "missing ')'");
    parse_err("States.Array(1) x", "unexpected text after the closing ')'");
    parse_err("States.Array(1,)", "missing argument");
    parse_err("States.Array(,1)", "missing argument");
    parse_err("States.Array(1 2)", "expected ',' or ')'");
    parse_err("States.Array (1)", "expected '(' immediately after 'States.Array'");
    parse_err("States.Array('abc)", "unterminated string literal");
    parse_err("States.Array(abc)", "unexpected 'abc'");
    parse_err("States.Array(\"abc\")", "unexpected character '\"'");
    parse_err("States.Array(01)", "'01' is not a valid number");
    parse_err("States.Array(1.)", "'1.' is not a valid number");
    parse_err("States.Array($.a[)", "is not a valid JSONPath");
    // [SPEC]/[DOC] only \' \{ \} \\ are escapes; an open backslash is an error.
    parse_err(r"States.Array('a\nb')", "open escape backslash");
    parse_err(r"States.Array('a\')", "unterminated string literal");
}

#[test]
fn parse_checks_argument_counts() {
    parse_err("States.Format()", "States.Format takes at least 1 argument(s), but 0 were given");
    parse_err("States.UUID(1)", "States.UUID takes 0 argument(s), but 1 were given");
    parse_err("States.MathAdd(1)", "States.MathAdd takes 2 argument(s), but 1 were given");
    parse_err(
        "States.MathRandom(1, 2, 3, 4)",
        "States.MathRandom takes 2 to 3 argument(s), but 4 were given",
    );
    parse_err("States.ArrayRange(1, 2)", "States.ArrayRange takes 3 argument(s)");
    parse_err("States.JsonMerge($.a, $.b)", "States.JsonMerge takes 3 argument(s)");
    parse_err("States.StringToJson()", "States.StringToJson takes 1 argument(s)");
    parse_err("States.Hash('a')", "States.Hash takes 2 argument(s)");
    // Nested calls are checked too.
    parse_err("States.Array(States.ArrayLength())", "States.ArrayLength takes 1 argument(s)");
    // A literal template's {} count is known at load time.
    parse_err(
        "States.Format('{} and {}', 1)",
        "has 2 occurrence(s) of {} but 1 argument(s) follow it",
    );
    parse_err("States.Format('no holes', 1)", "has 0 occurrence(s) of {} but 1 argument(s)");
    parse_err("States.Format(1)", "the first argument of States.Format must be a string");
    parse_err("States.Format('a { b')", "matching '}' not found for '{'");
    parse_err("States.Format('a } b')", "matching '{' not found for '}'");
}

#[test]
fn at_most_ten_calls_per_field() {
    // [DOC] the page's "myArn" example (nine calls) evaluates.
    let expr = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
    let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123:image-recipe/my.recipe/1.0.0"}});
    assert_eq!(ok(expr, input), json!("1.0"));
    // States.Array(1, States.Array(... States.Array() ...)): `calls` calls in all.
    let nest = |calls: usize, first: &str| {
        format!(
            "States.Array({first}{}{})",
            "States.Array(".repeat(calls - 1),
            ")".repeat(calls - 1)
        )
    };
    let mut expected = json!([]);
    for _ in 0..8 {
        expected = json!([expected]);
    }
    assert_eq!(ok(&nest(10, "1, "), json!({})), json!([1, expected]));
    let eleven = nest(10, "States.UUID(), ");
    parse_err(&eleven, "at most 10 intrinsic functions");
}

#[test]
fn literals_whitespace_and_escapes() {
    assert_eq!(
        ok("States.Array('Foo', 2020, -1.5, 1e2, null, true, false, '')", json!({})),
        json!(["Foo", 2020, -1.5, 100.0, null, true, false, ""])
    );
    assert_eq!(ok("States.Array(  1 ,\n2\t)", json!({})), json!([1, 2]));
    assert_eq!(
        serde_json::to_string(&ok("States.Array(-0, -0.0, 0.0)", json!({}))).unwrap(),
        "[0,-0.0,0.0]"
    );
    assert_eq!(ok("States.Array( )", json!({})), json!([]));
    // [SPEC] \' \{ \} \\ stand for ' { } \ ; in the definition JSON they are written
    // "\\'" etc., which is what this Rust text holds.
    assert_eq!(
        ok(r"States.Array('it\'s', '\{x\}', 'a\\b')", json!({})),
        json!(["it's", "{x}", r"a\b"])
    );
    let from_json: Value = serde_json::from_str(r#"{"v.$": "States.Array('it\\'s \\{\\} \\\\')"}"#).unwrap();
    let expr = from_json["v.$"].as_str().unwrap();
    assert_eq!(ok(expr, json!({})), json!([r"it's {} \"]));
    // [AWS-REC] unescaped braces are fine outside a Format template.
    assert_eq!(
        ok(r#"States.StringToJson('{"a": [1, {"b": null}]}')"#, json!({})),
        json!({"a": [1, {"b": null}]})
    );
    // Commas and parentheses inside strings are not separators.
    assert_eq!(ok("States.Array('a, b)', ')')", json!({})), json!(["a, b)", ")"]));
    // Non-ASCII text.
    assert_eq!(ok("States.Array('héllo ☃')", json!({})), json!(["héllo ☃"]));
}

// ---- paths -----------------------------------------------------------------------------

#[test]
fn path_arguments_read_input_context_and_variables() {
    let input = json!({"a": {"b": [10, 20, 30]}, "x y": 5, "items": [{"p": 1}, {"p": 5}, {"p": 9}]});
    let ctx = json!({"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:sm:run-1"}, "StateMachine": {"Id": "arn:sm", "Name": "sm"}});
    let mut vars = Vars::new();
    vars.set("cfg".into(), json!({"size": 3, "name": "cfg"}));
    let r = |e: &str| run_in(e, &input, &ctx, &vars).unwrap_or_else(|err| panic!("{e}: {err}"));
    assert_eq!(r("States.Array($.a.b[1], $.a.b[-1], $['x y'])"), json!([20, 30, 5]));
    assert_eq!(r("States.Array($)"), json!([input.clone()]));
    assert_eq!(
        r("States.Array($$.Execution.Id)"),
        json!(["arn:aws:states:us-east-1:1:execution:sm:run-1"])
    );
    assert_eq!(r("States.Format('{}/{}', $cfg.name, $cfg.size)"), json!("cfg/3"));
    assert_eq!(r("States.Array($cfg)"), json!([{"size": 3, "name": "cfg"}]));
    // Indefinite paths yield arrays; brackets may hold commas, quotes and parentheses.
    assert_eq!(r("States.ArrayLength($.items[?(@.p > 3)])"), json!(2));
    assert_eq!(r("States.Array($.items[*].p, $['a']['b'][0])"), json!([[1, 5, 9], 10]));
    assert_eq!(
        r("States.ArrayGetItem(States.StringSplit($$.Execution.Id, ':'), 3)"),
        json!("us-east-1")
    );
    // [AWS-REC] test_context_json_path: an object from the context object inside Format.
    assert_eq!(
        r("States.Format('fst={} and snd={}.', $$.Execution.Id, $$.StateMachine)"),
        json!("fst=arn:aws:states:us-east-1:1:execution:sm:run-1 and snd={Id=arn:sm, Name=sm}.")
    );
}

#[test]
fn a_path_that_selects_nothing_is_states_runtime() {
    // [AWS-ERR] the exact cause AWS writes (the engine adds the "An error occurred while
    // executing the state ..." prefix).
    let e = fails("States.Format('{}', $.nope)", json!({"other": 1}));
    assert_eq!(e.error, "States.Runtime");
    assert_eq!(
        e.cause,
        "The function 'States.Format('{}', $.nope)' had the following error: The JsonPath argument for the field '$.nope' could not be found in the input '{\"other\":1}'"
    );
    // Nested: the cause names the whole expression.
    let e = fails("States.Array(States.ArrayLength($.a.missing))", json!({"a": {}}));
    assert_eq!(e.error, "States.Runtime");
    assert!(
        e.cause
            .starts_with("The function 'States.Array(States.ArrayLength($.a.missing))' had"),
        "{}",
        e.cause
    );
    assert!(e.cause.contains("'$.a.missing'"), "{}", e.cause);
    // Context object and variables.
    let vars = Vars::new();
    let e = run_in("States.Array($$.Map.Item.Value)", &json!({}), &json!({}), &vars).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert!(e.cause.ends_with("could not be found in the context object"), "{}", e.cause);
    let e = run_in("States.Array($undefinedVar.x)", &json!({}), &json!({}), &vars).unwrap_err();
    assert_eq!(e.error, "States.Runtime");
    assert!(
        e.cause.ends_with("because the variable '$undefinedVar' is not defined"),
        "{}",
        e.cause
    );
    // A path to an explicit null is not missing.
    assert_eq!(ok("States.Array($.n)", json!({"n": null})), json!([null]));
}

// ---- States.Format ---------------------------------------------------------------------

#[test]
fn format_examples_and_value_rendering() {
    // [DOC] both forms give "Hello, my name is Arnav."
    let input = json!({"name": "Arnav", "template": "Hello, my name is {}."});
    assert_eq!(
        ok("States.Format('Hello, my name is {}.', $.name)", input.clone()),
        json!("Hello, my name is Arnav.")
    );
    assert_eq!(ok("States.Format($.template, $.name)", input), json!("Hello, my name is Arnav."));
    // [SPEC] "States.Format('Your name is {}, we are in the year {}', $.name, 2020)"
    assert_eq!(
        ok(
            "States.Format('Your name is {}, we are in the year {}', $.name, 2020)",
            json!({"name": "Foo"})
        ),
        json!("Your name is Foo, we are in the year 2020")
    );
    assert_eq!(ok("States.Format('')", json!({})), json!(""));
    assert_eq!(ok("States.Format('plain')", json!({})), json!("plain"));
    // [AWS-REC] test_format_1/test_format_2: "", " ", null, 1, 1.1, a JSON-looking string
    // and an object.
    let f = "States.Format('Formatting arguments fst={} and snd={}.', $.fst, $.snd)";
    let cases = [
        (json!(""), "Formatting arguments fst= and snd=."),
        (json!(" "), "Formatting arguments fst=  and snd= ."),
        (json!(null), "Formatting arguments fst=null and snd=null."),
        (json!(1), "Formatting arguments fst=1 and snd=1."),
        (json!(1.1), "Formatting arguments fst=1.1 and snd=1.1."),
        (
            json!("{\"Arg1\": 1, \"Arg2\": []}"),
            "Formatting arguments fst={\"Arg1\": 1, \"Arg2\": []} and snd={\"Arg1\": 1, \"Arg2\": []}.",
        ),
        (
            json!({"Arg1": 1, "Arg2": []}),
            "Formatting arguments fst={Arg1=1, Arg2=[]} and snd={Arg1=1, Arg2=[]}.",
        ),
    ];
    for (v, expected) in cases {
        assert_eq!(ok(f, json!({"fst": v.clone(), "snd": v})), json!(expected));
    }
    assert_eq!(
        ok("States.Format('{}|{}|{}', true, false, -0.5)", json!({})),
        json!("true|false|-0.5")
    );
    assert_eq!(
        ok("States.Format('{}', $.a)", json!({"a": ["x", 1, null, {"k": [true]}]})),
        json!("[x, 1, null, {k=[true]}]")
    );
    // Nested calls as values and as the template.
    assert_eq!(
        ok("States.Format('{} items', States.ArrayLength($.a))", json!({"a": [1, 2, 3]})),
        json!("3 items")
    );
    assert_eq!(ok("States.Format(States.Format('{}-\\{\\}', 'x'), 7)", json!({})), json!("x-7"));
}

#[test]
fn format_escapes() {
    // [SPEC] { and } can be escaped as \{ and \}; the escape is not a placeholder.
    assert_eq!(
        ok(r"States.Format('This value is \{{}\}', 'Foo')", json!({})),
        json!("This value is {Foo}")
    );
    assert_eq!(ok(r"States.Format('\{\}')", json!({})), json!("{}"));
    assert_eq!(ok(r"States.Format('{} - \'\{\}\\', 'Foo')", json!({})), json!(r"Foo - '{}\"));
    // [SPEC] example: "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)"
    let def: Value =
        serde_json::from_str(r#"{"greeting.$": "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)"}"#).unwrap();
    assert_eq!(
        ok(def["greeting.$"].as_str().unwrap(), json!({"firstName": "John", "lastName": "Doe"})),
        json!("Welcome to John Doe's playlist.")
    );
    // Values are inserted verbatim: braces and backslashes in them are not reinterpreted.
    assert_eq!(ok("States.Format('<{}>', $.v)", json!({"v": "{}\\{"})), json!("<{}\\{>"));
    // A template read from the input follows the same rules.
    assert_eq!(
        ok("States.Format($.t, 'Foo')", json!({"t": "This value is \\{{}\\}"})),
        json!("This value is {Foo}")
    );
}

#[test]
fn format_runtime_failures() {
    intrinsic_failure(
        "States.Format($.t, 1)",
        json!({"t": "none"}),
        "number of arguments do not match the occurrences of {}",
    );
    intrinsic_failure(
        "States.Format($.t)",
        json!({"t": "{} {}"}),
        "number of arguments do not match the occurrences of {}",
    );
    intrinsic_failure("States.Format($.t)", json!({"t": "a { b"}), "matching '}' not found for '{'");
    intrinsic_failure(
        "States.Format($.t, 1)",
        json!({"t": 5}),
        "argument 1 must be a string, but it is of type number",
    );
}

// ---- JSON ------------------------------------------------------------------------------

#[test]
fn string_to_json() {
    // [DOC] {"escapedJsonString": "{\"foo\": \"bar\"}"} -> { "foo": "bar" }
    assert_eq!(
        ok("States.StringToJson($.s)", json!({"s": "{\"foo\": \"bar\"}"})),
        json!({"foo": "bar"})
    );
    // [AWS-REC] test_string_to_json
    let cases = [
        ("", json!(null)),
        (" ", json!(null)),
        ("null", json!(null)),
        ("-0", json!(0)),
        ("1", json!(1)),
        ("1.1", json!(1.1)),
        ("true", json!(true)),
        ("\"HelloWorld\"", json!("HelloWorld")),
        ("[1, 2, \"HelloWorld\"]", json!([1, 2, "HelloWorld"])),
        ("{\"Arg1\": 1, \"Arg2\": []}", json!({"Arg1": 1, "Arg2": []})),
    ];
    for (s, expected) in cases {
        assert_eq!(ok("States.StringToJson($.s)", json!({"s": s})), expected, "{s:?}");
    }
    intrinsic_failure("States.StringToJson($.s)", json!({"s": "{oops"}), "not valid JSON");
    intrinsic_failure("States.StringToJson($.s)", json!({"s": 5}), "argument 1 must be a string");
}

#[test]
fn json_to_string() {
    // [AWS-REC] test_json_to_string: compact JSON text.
    let cases = [
        (json!(null), "null"),
        (json!(1), "1"),
        (json!(1.1), "1.1"),
        (json!(true), "true"),
        (json!("HelloWorld"), "\"HelloWorld\""),
        (json!([1, 2, "HelloWorld"]), "[1,2,\"HelloWorld\"]"),
        (json!({"Arg1": 1, "Arg2": []}), "{\"Arg1\":1,\"Arg2\":[]}"),
    ];
    for (v, expected) in cases {
        assert_eq!(ok("States.JsonToString($.v)", json!({"v": v})), json!(expected));
    }
    // Member order is kept.
    assert_eq!(
        ok("States.JsonToString($.v)", json!({"v": {"z": 1, "a": 2}})),
        json!("{\"z\":1,\"a\":2}")
    );
    // Round trip.
    assert_eq!(
        ok("States.StringToJson(States.JsonToString($.v))", json!({"v": {"a": [1, "x"]}})),
        json!({"a": [1, "x"]})
    );
}

#[test]
fn json_merge() {
    // [DOC] example: json2's "a" replaces json1's "a", nested objects are not merged.
    let input = json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}});
    let merged = ok("States.JsonMerge($.json1, $.json2, false)", input);
    assert_eq!(merged, json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3}));
    assert_eq!(serde_json::to_string(&merged).unwrap(), r#"{"a":{"a3":1,"a4":2},"b":2,"c":3}"#);
    // [AWS-REC] JsonMerge of a literal parsed with StringToJson and a context path.
    let ctx = json!({"Execution": {"Input": {"input_field": {"constant_input_field": "constant_value"}}}});
    let v = run_in(
        r#"States.JsonMerge(States.StringToJson('{"constant_in_literal": "false"}'), $$.Execution.Input.input_field, false)"#,
        &json!({}),
        &ctx,
        &Vars::new(),
    )
    .unwrap();
    assert_eq!(v, json!({"constant_in_literal": "false", "constant_input_field": "constant_value"}));
    // The same with the execution input held apart from the context object.
    let exec_input = json!({"input_field": {"k": "v"}});
    let ctx = json!({"Execution": {"Id": "x"}});
    let vars = Vars::new();
    let scope = Scope {
        execution_input: Some(&exec_input),
        ..Scope::new(&exec_input, &ctx, &vars)
    };
    let call = Intrinsic::parse("States.JsonMerge($$.Execution.Input.input_field, States.StringToJson('{\"a\": 1}'), false)").unwrap();
    assert_eq!(call.eval(&scope).unwrap(), json!({"k": "v", "a": 1}));
    intrinsic_failure(
        "States.JsonMerge($.a, $.b, true)",
        json!({"a": {}, "b": {}}),
        "deep merging is not supported",
    );
    intrinsic_failure(
        "States.JsonMerge($.a, $.b, 'false')",
        json!({"a": {}, "b": {}}),
        "argument 3 must be a boolean",
    );
    intrinsic_failure(
        "States.JsonMerge($.a, $.b, false)",
        json!({"a": [], "b": {}}),
        "argument 1 must be a JSON object, but it is of type array",
    );
    intrinsic_failure(
        "States.JsonMerge($.a, $.b, false)",
        json!({"a": {}, "b": 1}),
        "argument 2 must be a JSON object",
    );
}

// ---- arrays ----------------------------------------------------------------------------

#[test]
fn array() {
    // [DOC] {"Id": 123456} -> [123456]
    assert_eq!(ok("States.Array($.Id)", json!({"Id": 123456})), json!([123456]));
    // [SPEC] States.Array('Foo', 2020, $.someJson, null)
    assert_eq!(
        ok(
            "States.Array('Foo', 2020, $.someJson, null)",
            json!({"someJson": {"random": "abcdefg"}})
        ),
        json!(["Foo", 2020, {"random": "abcdefg"}, null])
    );
    assert_eq!(ok("States.Array()", json!({})), json!([]));
    assert_eq!(ok("States.Array(States.Array())", json!({})), json!([[]]));
}

#[test]
fn array_partition() {
    // [DOC] [1..9] in chunks of 4 -> [[1,2,3,4],[5,6,7,8],[9]]
    let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]});
    assert_eq!(
        ok("States.ArrayPartition($.inputArray,4)", input.clone()),
        json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
    );
    assert_eq!(
        ok("States.ArrayPartition($.inputArray, 9)", input.clone()),
        json!([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
    );
    assert_eq!(
        ok("States.ArrayPartition($.inputArray, 20)", input.clone()),
        json!([[1, 2, 3, 4, 5, 6, 7, 8, 9]])
    );
    assert_eq!(
        ok("States.ArrayPartition(States.Array(1, 2, 3), 2)", json!({})),
        json!([[1, 2], [3]])
    );
    assert_eq!(ok("States.ArrayPartition(States.Array(), 4)", json!({})), json!([]));
    // [DOC] "If you specify a non-integer value for the second argument, Step Functions will
    // round it off to the nearest integer."
    assert_eq!(
        ok("States.ArrayPartition($.inputArray, 2.5)", input.clone()),
        json!([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    );
    // [DOC] "You must specify a non-zero, positive integer"
    intrinsic_failure(
        "States.ArrayPartition($.inputArray, 0)",
        input.clone(),
        "the chunk size must be a positive integer, but it is 0",
    );
    intrinsic_failure("States.ArrayPartition($.inputArray, -1)", input.clone(), "it is -1");
    intrinsic_failure("States.ArrayPartition($.inputArray, 0.4)", input.clone(), "it is 0");
    intrinsic_failure("States.ArrayPartition($.inputArray, '4')", input, "argument 2 must be an integer");
    intrinsic_failure(
        "States.ArrayPartition($.x, 4)",
        json!({"x": "abc"}),
        "argument 1 must be an array, but it is of type string",
    );
}

#[test]
fn array_contains() {
    // [DOC] lookingFor 5 in [1..9] -> true
    let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5});
    assert_eq!(ok("States.ArrayContains($.inputArray, $.lookingFor)", input.clone()), json!(true));
    assert_eq!(ok("States.ArrayContains($.inputArray, 10)", input.clone()), json!(false));
    assert_eq!(ok("States.ArrayContains($.inputArray, '5')", input), json!(false));
    // Deep equality, whatever the member order.
    let input = json!({"a": [[1, 2, 3], 2, {"x": 1, "y": [null]}, true], "o": {"y": [null], "x": 1}});
    assert_eq!(ok("States.ArrayContains($.a, $.o)", input.clone()), json!(true));
    assert_eq!(ok("States.ArrayContains($.a, States.Array(1, 2, 3))", input.clone()), json!(true));
    assert_eq!(ok("States.ArrayContains($.a, States.Array(1, 2))", input.clone()), json!(false));
    assert_eq!(ok("States.ArrayContains($.a, null)", input.clone()), json!(false));
    assert_eq!(ok("States.ArrayContains($.a, true)", input), json!(true));
    assert_eq!(ok("States.ArrayContains(States.Array(), null)", json!({})), json!(false));
    intrinsic_failure(
        "States.ArrayContains($.o, 1)",
        json!({"o": {}}),
        "argument 1 must be an array, but it is of type object",
    );
}

#[test]
fn array_range() {
    // [DOC] States.ArrayRange(1, 9, 2) -> [1,3,5,7,9]
    assert_eq!(ok("States.ArrayRange(1, 9, 2)", json!({})), json!([1, 3, 5, 7, 9]));
    // [AWS-REC] test_array_range cases; the end is included only when a step lands on it.
    assert_eq!(ok("States.ArrayRange(0, 9, 3)", json!({})), json!([0, 3, 6, 9]));
    assert_eq!(ok("States.ArrayRange(0, 10, 3)", json!({})), json!([0, 3, 6, 9]));
    assert_eq!(ok("States.ArrayRange(1, 9, 9)", json!({})), json!([1]));
    assert_eq!(ok("States.ArrayRange(9, -1, -2)", json!({})), json!([9, 7, 5, 3, 1, -1]));
    assert_eq!(ok("States.ArrayRange(5, 5, 1)", json!({})), json!([5]));
    // A step that walks away from the end gives an empty array.
    assert_eq!(ok("States.ArrayRange(1, 9, -2)", json!({})), json!([]));
    assert_eq!(ok("States.ArrayRange(9, 1, 2)", json!({})), json!([]));
    // [DOC] non-integers are rounded to the nearest integer (Java: half up).
    assert_eq!(ok("States.ArrayRange(1.5, 4.4, 0.6)", json!({})), json!([2, 3, 4]));
    assert_eq!(
        ok("States.ArrayRange($.a, $.b, $.c)", json!({"a": -2, "b": 2, "c": 2})),
        json!([-2, 0, 2])
    );
    // [DOC] at most 1000 items.
    assert_eq!(ok("States.ArrayLength(States.ArrayRange(1, 1000, 1))", json!({})), json!(1000));
    assert_eq!(ok("States.ArrayLength(States.ArrayRange(0, -999, -1))", json!({})), json!(1000));
    intrinsic_failure(
        "States.ArrayRange(0, 1000, 1)",
        json!({}),
        "the range would contain 1001 items, but it can contain at most 1000",
    );
    intrinsic_failure(
        "States.ArrayRange(-9223372036854775808, 9223372036854775807, 1)",
        json!({}),
        "can contain at most 1000",
    );
    // [DOC] the third argument must not be zero.
    intrinsic_failure("States.ArrayRange(1, 9, 0)", json!({}), "the step (argument 3) must not be zero");
    intrinsic_failure(
        "States.ArrayRange('1', 9, 1)",
        json!({}),
        "argument 1 must be an integer, but it is of type string",
    );
}

#[test]
fn array_get_item() {
    // [DOC] index 5 of [1..9] -> 6
    let input = json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5});
    assert_eq!(ok("States.ArrayGetItem($.inputArray, $.index)", input.clone()), json!(6));
    assert_eq!(ok("States.ArrayGetItem($.inputArray, 0)", input.clone()), json!(1));
    assert_eq!(ok("States.ArrayGetItem($.inputArray, 8)", input.clone()), json!(9));
    assert_eq!(
        ok("States.ArrayGetItem(States.Array('a', States.Array('b')), 1)", json!({})),
        json!(["b"])
    );
    intrinsic_failure(
        "States.ArrayGetItem($.inputArray, 9)",
        input.clone(),
        "index 9 is out of bounds for an array of length 9",
    );
    intrinsic_failure("States.ArrayGetItem($.inputArray, -1)", input.clone(), "index -1 is out of bounds");
    intrinsic_failure(
        "States.ArrayGetItem(States.Array(), 0)",
        json!({}),
        "index 0 is out of bounds for an array of length 0",
    );
    intrinsic_failure("States.ArrayGetItem($.inputArray, 'a')", input, "argument 2 must be an integer");
}

#[test]
fn array_length_and_unique() {
    // [DOC] length of [1..9] -> 9
    assert_eq!(
        ok(
            "States.ArrayLength($.inputArray)",
            json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9]})
        ),
        json!(9)
    );
    assert_eq!(ok("States.ArrayLength(States.Array())", json!({})), json!(0));
    intrinsic_failure(
        "States.ArrayLength($.s)",
        json!({"s": "abc"}),
        "argument 1 must be an array, but it is of type string",
    );
    // [DOC] [1,2,3,3,3,3,3,3,4] -> [1,2,3,4]
    assert_eq!(
        ok(
            "States.ArrayUnique($.inputArray)",
            json!({"inputArray": [1, 2, 3, 3, 3, 3, 3, 3, 4]})
        ),
        json!([1, 2, 3, 4])
    );
    // First occurrence kept, in order; deep equality (member order ignored); 1 and "1" differ.
    let input = json!({"a": [null, null, true, true, false, 1, "1", 1, 1.1, 0, "HelloWorld", "HelloWorld", [], [],
        [null], [null], {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "b": 1}, 3, 1]});
    assert_eq!(
        ok("States.ArrayUnique($.a)", input),
        json!([null, true, false, 1, "1", 1.1, 0, "HelloWorld", [], [null], {"a": 1, "b": 2}, {"a": 1, "b": 1}, 3])
    );
    assert_eq!(ok("States.ArrayUnique(States.Array(3, 2, 3, 1, 2))", json!({})), json!([3, 2, 1]));
    intrinsic_failure("States.ArrayUnique($.o)", json!({"o": {}}), "must be an array");
}

// ---- encoding, hashing -----------------------------------------------------------------

#[test]
fn base64() {
    // [DOC] "Data to encode" <-> "RGF0YSB0byBlbmNvZGU="; [AWS-REC] "" <-> "".
    assert_eq!(
        ok("States.Base64Encode($.input)", json!({"input": "Data to encode"})),
        json!("RGF0YSB0byBlbmNvZGU=")
    );
    assert_eq!(
        ok("States.Base64Decode($.base64)", json!({"base64": "RGF0YSB0byBlbmNvZGU="})),
        json!("Data to encode")
    );
    assert_eq!(ok("States.Base64Encode('')", json!({})), json!(""));
    assert_eq!(ok("States.Base64Decode('')", json!({})), json!(""));
    // UTF-8 text round trips.
    assert_eq!(ok("States.Base64Encode('héllo ☃')", json!({})), json!("aMOpbGxvIOKYgw=="));
    assert_eq!(
        ok("States.Base64Decode(States.Base64Encode('héllo ☃'))", json!({})),
        json!("héllo ☃")
    );
    // MIME decoding: missing padding and line breaks are accepted.
    assert_eq!(ok("States.Base64Decode('RGF0YSB0byBlbmNvZGU')", json!({})), json!("Data to encode"));
    assert_eq!(
        ok("States.Base64Decode($.s)", json!({"s": "RGF0YSB0\r\nbyBlbmNvZGU="})),
        json!("Data to encode")
    );
    intrinsic_failure("States.Base64Decode('R*F0')", json!({}), "not valid Base64");
    // [DOC] up to 10,000 characters, for both.
    let max = "a".repeat(10_000);
    assert_eq!(
        ok("States.ArrayLength(States.Array(States.Base64Encode($.s)))", json!({"s": max})),
        json!(1)
    );
    let long = "a".repeat(10_001);
    intrinsic_failure(
        "States.Base64Encode($.s)",
        json!({"s": long.clone()}),
        "the input has 10001 characters, but at most 10000 are allowed",
    );
    intrinsic_failure("States.Base64Decode($.s)", json!({"s": long}), "the input has 10001 characters");
    // Characters, not bytes: 5,000 two-byte characters are fine.
    assert!(ok("States.Base64Encode($.s)", json!({"s": "é".repeat(5_000)})).is_string());
    intrinsic_failure(
        "States.Base64Encode(1)",
        json!({}),
        "argument 1 must be a string, but it is of type number",
    );
}

#[test]
fn hash() {
    // [DOC] lists MD5, SHA-1, SHA-256, SHA-384, SHA-512; digests are lowercase hex
    // (cross-checked with md5sum/sha*sum of "input data").
    let cases = [
        ("MD5", "812f45842bc6d66ee14572ce20db8e86"),
        ("SHA-1", "aaff4a450a104cd177d28d18d74485e8cae074b7"),
        ("SHA-256", "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
        (
            "SHA-384",
            "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562",
        ),
        (
            "SHA-512",
            "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4",
        ),
    ];
    for (alg, digest) in cases {
        let input = json!({"Data": "input data", "Algorithm": alg});
        assert_eq!(ok("States.Hash($.Data, $.Algorithm)", input), json!(digest), "{alg}");
    }
    assert_eq!(
        ok("States.Hash('', 'SHA-1')", json!({})),
        json!("da39a3ee5e6b4b0d3255bfef95601890afd80709")
    );
    // Data that is not a string is digested as its Format text ("1", "true", "{foo=bar}" --
    // the last as [SFN-LOCAL] records it).
    assert_eq!(
        ok("States.Hash($.d, 'SHA-1')", json!({"d": 1})),
        json!("356a192b7913b04c54574d18c28d46e6395428ab")
    );
    assert_eq!(
        ok("States.Hash($.d, 'SHA-1')", json!({"d": true})),
        json!("5ffe533b830f08a0326348a9160afafc8ada44db")
    );
    assert_eq!(
        ok("States.Hash($.d, 'SHA-1')", json!({"d": {"foo": "bar"}})),
        json!("dc2935b70ad43836e2e74df2d9758b1e51397997")
    );
    intrinsic_failure("States.Hash(null, 'SHA-1')", json!({}), "the data (argument 1) must not be null");
    intrinsic_failure("States.Hash('x', 'SHA-224')", json!({}), "'SHA-224' is not a supported algorithm");
    intrinsic_failure("States.Hash('x', 'sha-1')", json!({}), "'sha-1' is not a supported algorithm");
    intrinsic_failure("States.Hash('x', 1)", json!({}), "argument 2 must be a string");
    // [DOC] "10,000 characters or less"
    assert_eq!(
        ok("States.Hash($.s, 'MD5')", json!({"s": "a".repeat(10_000)}))
            .as_str()
            .map(str::len),
        Some(32)
    );
    intrinsic_failure(
        "States.Hash($.s, 'MD5')",
        json!({"s": "a".repeat(10_001)}),
        "at most 10000 are allowed",
    );
}

// ---- math ------------------------------------------------------------------------------

#[test]
fn math_add() {
    // [DOC] 111 + -1 -> 110
    assert_eq!(
        ok("States.MathAdd($.value1, $.step)", json!({"value1": 111, "step": -1})),
        json!(110)
    );
    assert_eq!(ok("States.MathAdd(-9, 3)", json!({})), json!(-6));
    // [AWS-REC] test_math_add: each argument is rounded (Java Math.round) before adding.
    let cases = [
        (1.49, 1.5, 3),
        (1.5, 1.51, 4),
        (-1.49, -1.5, -2),
        (-1.5, -1.51, -3),
        (0.5, 0.0, 1),
        (2.5, 0.0, 3),
        (-0.5, 0.0, 0),
        (-2.5, 0.0, -2),
        (-0.5, 0.5, 1),
        (1.49, -1.49, 0),
    ];
    for (x, y, sum) in cases {
        assert_eq!(ok("States.MathAdd($.x, $.y)", json!({"x": x, "y": y})), json!(sum), "{x} + {y}");
    }
    // [DOC] "integer values in the range of -2147483648 and 2147483647"
    assert_eq!(ok("States.MathAdd(2147483647, 2147483647)", json!({})), json!(4294967294_i64));
    assert_eq!(ok("States.MathAdd(-2147483648, 0)", json!({})), json!(-2147483648_i64));
    intrinsic_failure(
        "States.MathAdd(2147483648, 0)",
        json!({}),
        "argument 1 (2147483648) is outside the range -2147483648 to 2147483647",
    );
    intrinsic_failure(
        "States.MathAdd(0, -2147483649)",
        json!({}),
        "argument 2 (-2147483649) is outside the range",
    );
    intrinsic_failure(
        "States.MathAdd('1', 2)",
        json!({}),
        "argument 1 must be an integer, but it is of type string",
    );
    intrinsic_failure(
        "States.MathAdd(1, null)",
        json!({}),
        "argument 2 must be an integer, but it is of type null",
    );
    // Loop counter built from nested calls.
    assert_eq!(ok("States.MathAdd(States.ArrayLength($.a), -1)", json!({"a": [1, 2, 3]})), json!(2));
}

#[test]
fn java_round_matches_math_round() {
    // Values from java.lang.Math.round.
    for (x, r) in [(-2.5, -2), (2.5, 3), (-0.5, 0), (0.49999999999999994, 0), (-1.5, -1), (1.5, 2)] {
        assert_eq!(java_round(x), Some(r), "{x}");
    }
    assert_eq!(java_round(1e300), None);
    assert_eq!(java_round(-9.3e18), None);
    assert_eq!(java_round(4.5e15 + 0.5), Some(4_500_000_000_000_001));
}

#[test]
fn math_random() {
    // [DOC] start inclusive, end exclusive.
    let mut seen = [false; 3];
    for _ in 0..400 {
        let v = ok("States.MathRandom(1, 3)", json!({})).as_i64().unwrap();
        assert!((1..3).contains(&v), "{v}");
        seen[v as usize] = true;
    }
    assert_eq!(seen, [false, true, true]);
    for _ in 0..50 {
        let v = ok("States.MathRandom($.start, $.end)", json!({"start": -99999, "end": -9999}))
            .as_i64()
            .unwrap();
        assert!((-99999..-9999).contains(&v));
    }
    // [DOC] non-integer bounds are rounded: [12.5, 44.51) -> [13, 45)
    for _ in 0..50 {
        let v = ok("States.MathRandom(12.5, 44.51)", json!({})).as_i64().unwrap();
        assert!((13..45).contains(&v), "{v}");
    }
    // [DOC] the same seed gives the same number: java.util.Random's sequence (values
    // printed by `new Random(seed).nextInt(bound)` on a JVM).
    assert_eq!(ok("States.MathRandom(0, 10, 42)", json!({})), json!(0));
    assert_eq!(ok("States.MathRandom(1, 1000, 3)", json!({})), json!(240));
    assert_eq!(ok("States.MathRandom(0, 1000000007, -7)", json!({})), json!(577934662));
    assert_eq!(ok("States.MathRandom(100, 1048676, 12345)", json!({})), json!(379478));
    let a = ok("States.MathRandom(0, 999, $.seed)", json!({"seed": 3}));
    assert_eq!(a, ok("States.MathRandom(0, 999, $.seed)", json!({"seed": 3})));
    // Widths beyond an int still work and stay in range.
    let v = ok("States.MathRandom(-9000000000000000000, 9000000000000000000, 1)", json!({}))
        .as_i64()
        .unwrap();
    assert!((-9_000_000_000_000_000_000..9_000_000_000_000_000_000).contains(&v));
    intrinsic_failure("States.MathRandom(5, 5)", json!({}), "the start (5) must be less than the end (5)");
    intrinsic_failure("States.MathRandom(10, 1)", json!({}), "must be less than the end");
    intrinsic_failure("States.MathRandom('1', 2)", json!({}), "argument 1 must be an integer");
    intrinsic_failure("States.MathRandom(1, 2, 'x')", json!({}), "argument 3 must be an integer");
}

#[test]
fn java_random_sequence() {
    // new Random(42).nextInt() and new Random(0).nextInt() on a JVM.
    assert_eq!(JavaRandom::new(42).next(32), -1170105035);
    assert_eq!(JavaRandom::new(0).next(32), -1155484576);
    assert_eq!(JavaRandom::new(3).next_int(999), 239);
    assert_eq!(JavaRandom::new(12345).next_int(1 << 20), 379378);
}

// ---- strings, uuid ---------------------------------------------------------------------

#[test]
fn string_split() {
    // [DOC] both examples.
    assert_eq!(
        ok(
            "States.StringSplit($.inputString, $.splitter)",
            json!({"inputString": "1,2,3,4,5", "splitter": ","})
        ),
        json!(["1", "2", "3", "4", "5"])
    );
    assert_eq!(
        ok(
            "States.StringSplit($.inputString, $.splitter)",
            json!({"inputString": "This.is+a,test=string", "splitter": ".+,="})
        ),
        json!(["This", "is", "a", "test", "string"])
    );
    // [AWS-REC] test_string_split: empty members are dropped, blanks are kept.
    let cases = [
        (" ", ",", json!([" "])),
        (" , ", ",", json!([" ", " "])),
        (", , ,", ",", json!([" ", " "])),
        (",,,,", ",", json!([])),
        ("split on T and \nnew line", "T\n", json!(["split on ", " and ", "new line"])),
    ];
    for (s, d, expected) in cases {
        assert_eq!(ok("States.StringSplit($.s, $.d)", json!({"s": s, "d": d})), expected, "{s:?}");
    }
    // [AWS-REC] test_string_split_context_object
    let csv = "Value1,Value2,Value3\nValue4,Value5,Value6\n,,,\ntrue,1,'HelloWorld'\nNull,None,\n   \n";
    assert_eq!(
        ok("States.StringSplit($.s, ',')", json!({"s": csv})),
        json!([
            "Value1",
            "Value2",
            "Value3\nValue4",
            "Value5",
            "Value6\n",
            "\ntrue",
            "1",
            "'HelloWorld'\nNull",
            "None",
            "\n   \n"
        ])
    );
    // [AWS-REC] test_escape_sequence: a newline inside the literal.
    assert_eq!(ok("States.StringSplit('Hello\nWorld', '\n')", json!({})), json!(["Hello", "World"]));
    assert_eq!(ok("States.StringSplit('', ',')", json!({})), json!([]));
    assert_eq!(ok("States.StringSplit('a,b', '')", json!({})), json!(["a,b"]));
    assert_eq!(ok("States.StringSplit('a☃b☃', '☃')", json!({})), json!(["a", "b"]));
    intrinsic_failure("States.StringSplit(1, ',')", json!({}), "argument 1 must be a string");
    intrinsic_failure("States.StringSplit('a', 1)", json!({}), "argument 2 must be a string");
}

#[test]
fn uuid_is_a_random_v4() {
    let a = ok("States.UUID()", json!({}));
    let b = ok("States.UUID()", json!({}));
    assert_ne!(a, b);
    let s = a.as_str().unwrap();
    let groups: Vec<&str> = s.split('-').collect();
    assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{s}");
    assert!(s.chars().all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)), "{s}");
    assert!(groups[2].starts_with('4'), "{s}");
    assert!(matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "{s}");
}

#[test]
fn intrinsics_work_inside_payload_templates() {
    let t = crate::path::Template::compile(&json!({"n.$": "States.MathAdd($.n, 1)", "s.$": "States.Format('n={}', $.n)"})).unwrap();
    let input = json!({"n": 41});
    let ctx = json!({});
    let vars = Vars::new();
    assert_eq!(t.eval(&Scope::new(&input, &ctx, &vars)).unwrap(), json!({"n": 42, "s": "n=41"}));
    let err = crate::path::Template::compile(&json!({"x.$": "States.Format('{}')"})).unwrap_err();
    assert_eq!(err.0, "x.$");
}
