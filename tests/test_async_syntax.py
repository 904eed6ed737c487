"""The compiler side of async operations, emits and pipelines (spec 10, 15, 30):
what each construct compiles to, its static type, and its compile errors.

These tests look at compile output only (IR instructions and diagnostics);
running the programs is the VM's business and is tested there.
"""

from __future__ import annotations

import textwrap

import pytest

from concerto import ir
from concerto.compiler import compile_source
from concerto.compiler.diagnostics import render_plain


def compile_(src: str, mock: bool = True):
    return compile_source(textwrap.dedent(src), "main.conc", mock=mock)


def ok(src: str) -> ir.Program:
    result = compile_(src)
    assert result.ok, "\n".join(render_plain(d, result.sources.get(d.file)) for d in result.diagnostics)
    assert result.program is not None
    return result.program


def errors(src: str) -> list[tuple[int, int, str]]:
    result = compile_(src)
    assert not result.ok
    return [(d.line, d.col, d.message) for d in result.diagnostics if d.severity == "error"]


def fn(program: ir.Program, name: str) -> ir.Function:
    return next(f for f in program.functions if f.name == name)


def ops(function: ir.Function, only: set[str] | None = None) -> list[str]:
    return [i.op for i in function.instructions if only is None or i.op in only]


def instrs(function: ir.Function, op: str) -> list[ir.Instr]:
    return [i for i in function.instructions if i.op == op]


def type_of(expr: str, prelude: str = "") -> str:
    """The static type the compiler gives `expr`, read off a mismatch diagnostic."""
    src = prelude + "\nfn main() {\n    let probe: Bool = " + expr + ";\n}\n"
    result = compile_source(src, "main.conc", mock=True)
    messages = [d.message for d in result.diagnostics]
    if result.ok:
        return "Bool-compatible"
    (msg,) = [m for m in messages if m.startswith("mismatched types: expected `Bool`")]
    return msg.split("found `", 1)[1].rstrip("`")


ASYNC_FNS = """
async fn number() -> Int { 1 }
fn text() -> String { "a" }
"""

_CONCURRENCY = {"AWAIT", "AWAIT_ALL", "RACE", "PARALLEL_FOR", "SPAWN_ASYNC", "EMIT", "EMIT_AWAIT",
                "RUN_PIPELINE", "MAKE_CLOSURE", "CALL_NATIVE", "CALL"}


# ---------------------------------------------------------------- await
def test_async_fn_call_is_an_ordinary_call_and_await_follows_it():
    program = ok(ASYNC_FNS + """
        fn main() {
            let a = number().await;
            let b = await number();
            emit("x", a + b);
        }
    """)
    assert fn(program, "number").is_async
    assert ops(fn(program, "main"), _CONCURRENCY) == ["CALL", "AWAIT", "CALL", "AWAIT", "EMIT"]


def test_await_is_allowed_outside_async_functions():
    program = ok("fn helper() -> Int { 5.await }\nfn main() { emit(\"x\", helper()); }\n")
    assert ops(fn(program, "helper")) == ["LOAD_CONST", "AWAIT", "RETURN"]


def test_await_of_a_plain_value_has_its_type_and_of_a_task_its_value_type():
    assert type_of("number().await", ASYNC_FNS) == "Int"
    assert type_of("await text()", ASYNC_FNS) == "String"
    assert type_of("spawn(|| text())", ASYNC_FNS) == "Task<String>"
    assert type_of("spawn(number)", ASYNC_FNS) == "Task<Int>"
    assert type_of("spawn(|| 1).await", ASYNC_FNS) == "Int"
    assert type_of("await spawn(number)", ASYNC_FNS) == "Int"


def test_postfix_await_then_question_mark():
    program = ok("""
        fn get() -> Result<Int, String> { Ok(1) }
        fn twice() -> Result<Int, String> {
            let v = get().await?;
            Ok(v * 2)
        }
        fn main() { emit("x", twice()); }
    """)
    assert ops(fn(program, "twice"), {"CALL", "AWAIT", "PROPAGATE"}) == ["CALL", "AWAIT", "PROPAGATE"]


def test_parallel_await_of_a_tuple_makes_one_closure_per_element():
    program = ok(ASYNC_FNS + """
        fn main() {
            let second = spawn(|| 2);
            let combined = await (number(), second, 5);
            emit("sum", combined[0] + combined[1] + combined[2]);
        }
    """)
    main = fn(program, "main")
    assert ops(main, _CONCURRENCY) == ["MAKE_CLOSURE", "SPAWN_ASYNC", "MAKE_CLOSURE", "MAKE_CLOSURE",
                                       "MAKE_CLOSURE", "AWAIT_ALL", "EMIT"]
    (await_all,) = instrs(main, "AWAIT_ALL")
    assert await_all.arg == 3
    closures = [i for i in instrs(main, "MAKE_CLOSURE")][1:]
    # The closure over `second` captures it; the others capture nothing.
    assert [c.argc for c in closures] == [0, 1, 0]
    thunk = fn(program, closures[1].name)
    assert thunk.params == [] and thunk.captures == ["second"]
    assert ops(fn(program, closures[0].name)) == ["CALL", "RETURN"]
    assert type_of("await (number(), text(), 5)", ASYNC_FNS) == "(Int, String, Int)"
    assert type_of("await (spawn(number), spawn(text))", ASYNC_FNS) == "(Int, String)"


def test_await_of_a_parenthesised_single_value_is_a_plain_await():
    program = ok(ASYNC_FNS + "fn main() { let a = await (number()); emit(\"x\", a); }\n")
    assert "AWAIT_ALL" not in ops(fn(program, "main"))
    assert "AWAIT" in ops(fn(program, "main"))


def test_race_compiles_closures_then_race():
    program = ok(ASYNC_FNS + """
        fn main() {
            let winner = race (number(), number());
            emit("w", winner);
        }
    """)
    main = fn(program, "main")
    assert ops(main, _CONCURRENCY) == ["MAKE_CLOSURE", "MAKE_CLOSURE", "RACE", "EMIT"]
    assert instrs(main, "RACE")[0].arg == 2
    assert type_of("race (number(), number())", ASYNC_FNS) == "Int"
    assert type_of("race (number(), text())", ASYNC_FNS) == "Bool-compatible"  # Any


def test_race_with_a_user_function_named_race_is_a_call():
    program = ok("fn race(a: Int, b: Int) -> Int { a }\nfn main() { emit(\"x\", race(1, 2)); }\n")
    assert "RACE" not in ops(fn(program, "main"))
    assert instrs(fn(program, "main"), "CALL")[0].name == "race"


# ---------------------------------------------------------------- parallel for
def test_parallel_for_is_an_expression_with_a_one_parameter_closure():
    program = ok("""
        fn double(x: Int) -> Int { x * 2 }
        fn main() {
            let factor = 3;
            let results = parallel for n in [1, 2, 3] { double(n) * factor };
            emit("r", results);
        }
    """)
    main = fn(program, "main")
    assert ops(main, {"BUILD_ARRAY", "MAKE_CLOSURE", "PARALLEL_FOR"}) == ["BUILD_ARRAY", "MAKE_CLOSURE", "PARALLEL_FOR"]
    (closure,) = instrs(main, "MAKE_CLOSURE")
    body = fn(program, closure.name)
    assert [p.name for p in body.params] == ["n"]
    assert body.params[0].type == "Int"
    assert body.captures == ["factor"] and closure.argc == 1
    assert type_of("parallel for n in [1, 2] { n * 2 }") == "Array<Int>"
    assert type_of('parallel for s in ["a"] { s.len() > 0 }') == "Array<Bool>"


def test_parallel_for_as_statement_and_as_function_tail():
    program = ok("""
        fn lengths(docs: Array<String>) -> Array<Int> {
            parallel for doc in docs { doc.len() }
        }
        fn main() {
            parallel for (k, v) in [(1, "a")] { emit("kv", v) }
            emit("l", lengths(["ab"]));
        }
    """)
    assert ops(fn(program, "lengths"), {"PARALLEL_FOR", "RETURN"}) == ["PARALLEL_FOR", "RETURN"]
    main = fn(program, "main")
    assert ops(main, {"PARALLEL_FOR", "POP"})[:2] == ["PARALLEL_FOR", "POP"]
    body = fn(program, instrs(main, "MAKE_CLOSURE")[0].name)
    assert [p.name for p in body.params] == ["$item"]
    assert body.params[0].type == "(Int, String)"


@pytest.mark.parametrize("word", ["break", "continue"])
def test_break_and_continue_cannot_leave_a_parallel_for_body(word):
    errs = errors(f"fn main() {{\n    parallel for x in [1] {{\n        if x > 0 {{ {word}; }}\n    }}\n}}\n")
    assert errs == [(3, 20, f"`{word}` cannot leave a `parallel for` body")]


def test_break_inside_a_loop_inside_parallel_for_is_fine():
    ok("fn main() {\n    let r = parallel for x in [1] { for y in [2] { break; } x };\n    emit(\"r\", r);\n}\n")


# ---------------------------------------------------------------- spawn, flush_emits
def test_spawn_pushes_the_closure_then_spawn_async():
    program = ok("fn work() -> Int { 1 }\nfn main() {\n    let t = spawn(work);\n    let u = spawn(|| work());\n"
                 "    emit(\"x\", t.await + u.await);\n}\n")
    main = fn(program, "main")
    assert ops(main, _CONCURRENCY) == ["SPAWN_ASYNC", "MAKE_CLOSURE", "SPAWN_ASYNC", "AWAIT", "AWAIT", "EMIT"]
    assert ops(main)[:2] == ["LOAD_GLOBAL", "SPAWN_ASYNC"]


def test_spawn_needs_a_function_with_no_parameters():
    errs = errors("fn one(x: Int) -> Int { x }\nfn main() {\n    let a = spawn(3);\n    let b = spawn(|x| x);\n"
                  "    let c = spawn(one);\n    let d = spawn();\n}\n")
    messages = [m for _, _, m in errs]
    assert errs[0][:2] == (3, 19) and "`spawn` needs a function with no parameters, found `Int`" in messages[0]
    assert errs[1][:2] == (4, 19)
    assert "`one` takes 1" in messages[2]
    assert "`spawn` takes one function" in messages[3]


def test_a_user_function_named_spawn_wins():
    program = ok("fn spawn(x: Int) -> Int { x }\nfn main() { emit(\"x\", spawn(1)); }\n")
    assert "SPAWN_ASYNC" not in ops(fn(program, "main"))


def test_flush_emits_is_a_native_call_returning_nil():
    program = ok("fn main() {\n    emit(\"a\", 1);\n    flush_emits();\n}\n")
    (call,) = instrs(fn(program, "main"), "CALL_NATIVE")
    assert (call.name, call.argc) == ("flush_emits", 0)
    assert type_of("flush_emits()") == "Nil"
    assert errors("fn main() { flush_emits(1); }\n") == [(1, 13, "`flush_emits` takes no arguments, 1 given")]


# ---------------------------------------------------------------- emit
def test_await_emit_is_emit_await():
    program = ok("""
        fn main() {
            let answer = await emit("request:input", {"prompt": "name?"});
            match await emit("approval", answer) {
                _ => emit("done", 1),
            }
            emit("plain", 1);
        }
    """)
    main = fn(program, "main")
    assert ops(main, {"EMIT", "EMIT_AWAIT"}) == ["EMIT_AWAIT", "EMIT_AWAIT", "EMIT", "EMIT"]
    assert type_of('await emit("c", 1)') == "Bool-compatible"  # Any
    assert type_of('emit("c", 1)') == "Nil"


SCHEMA = """
schema ClassificationEmit {
    label: String,
    confidence: Float,
    timestamp: String,
    note?: String,
    level: "low" | "high",
    count: Int = 0,
}
"""


def test_typed_emit_compiles_to_a_plain_emit():
    program = ok(SCHEMA + """
        fn main() {
            emit<ClassificationEmit>("classification", {
                "label": "news", "confidence": 1, "timestamp": "now", "level": "high",
            });
            let reply = await emit<ClassificationEmit>("c", {
                "label": "a", "confidence": 0.5, "timestamp": "t", "level": "low", "note": nil, "count": 3,
            });
        }
    """)
    assert ops(fn(program, "main"), {"EMIT", "EMIT_AWAIT"}) == ["EMIT", "EMIT_AWAIT"]


def test_typed_emit_missing_field():
    errs = errors(SCHEMA + 'fn main() {\n    emit<ClassificationEmit>("c", {"label": "a", "confidence": 1.0, "level": "low"});\n}\n')
    assert errs == [(11, 35, "typed emit `ClassificationEmit`: missing field `timestamp`")]


def test_typed_emit_wrong_literal_types_and_unknown_keys():
    src = SCHEMA + ('fn main() {\n    emit<ClassificationEmit>("c", {"label": 1, "confidence": "x", "timestamp": "t",'
                    ' "level": "mid", "bogus": 2});\n}\n')
    assert errors(src) == [
        (11, 45, "typed emit `ClassificationEmit`: field `label` expects `String`, found `Int`"),
        (11, 62, "typed emit `ClassificationEmit`: field `confidence` expects `Float`, found `String`"),
        (11, 94, 'typed emit `ClassificationEmit`: field `level` must be one of "low" | "high", found "mid"'),
        (11, 101, "typed emit `ClassificationEmit`: unknown field `bogus`"),
    ]


def test_typed_emit_needs_a_schema():
    assert errors('struct P { x: Int }\nfn main() {\n    emit<P>("c", {});\n}\n') == [
        (3, 10, "typed emit: `P` is not a schema")]


def test_typed_emit_with_a_computed_payload_is_checked_at_run_time():
    ok(SCHEMA + 'fn main() {\n    let payload = {"anything": 1};\n    emit<ClassificationEmit>("c", payload);\n}\n')


def test_typed_emit_diagnostic_rendering(snapshot):
    src = SCHEMA + 'fn main() {\n    emit<ClassificationEmit>("c", {"label": "a", "confidence": 1.0, "level": "low"});\n}\n'
    result = compile_(src)
    text = "\n".join(render_plain(d, result.sources.get(d.file)) for d in result.diagnostics)
    assert text == snapshot


# ---------------------------------------------------------------- error types
def test_new_error_types_are_catchable_with_typed_fields():
    program = ok("""
        fn main() {
            try { emit("x", 1); } catch EmitError(e) { let c: String = e.channel; emit("m", e.message); }
            try { emit("x", 1); } catch PipelineError(e) {
                let p: String = e.pipeline;
                let s: String = e.stage;
            } catch TimeoutError(t) { emit("t", t.message); } catch CancelledError { }
        }
    """)
    checks = [i.type_name for i in instrs(fn(program, "main"), "CHECK_TYPE")]
    assert checks == ["EmitError", "PipelineError", "TimeoutError", "CancelledError"]
    errs = errors('fn main() {\n    try { emit("x", 1); } catch EmitError(e) { let z = e.nope; }\n}\n')
    assert errs == [(2, 56, "`EmitError` has no field `nope`")]


# ---------------------------------------------------------------- pipelines
PIPELINE = """
schema Summary { text: String }
hashmap state: HashMap<String, Any> = HashMap::new();

@timeout(seconds: 60)
pipeline DocFlow(input: String) -> Summary {
    @retry(max: 3, backoff: "exponential")
    stage extract(doc: String) -> Result<String, String> {
        if doc == "" { throw "empty" }
        Ok(doc)
    }

    @timeout(10)
    stage measure(text: String) -> Int {
        state.set("seen", text);
        text.len()
    }

    stage summarize(n: Float) -> Summary {
        let r: Result<Summary, String> = Ok(Summary { text: "${n}" });
        r?
    }
}
"""


def test_pipeline_stages_compile_to_functions_and_a_pipeline_def():
    program = ok(PIPELINE + """
        fn main() {
            match DocFlow.run("text").await {
                Ok(summary) => emit("s", summary.text),
                Err(e) => emit("e", e.message),
            }
        }
    """)
    (p,) = program.pipelines
    assert (p.name, p.module, p.input_type, p.output_type) == ("DocFlow", "main", "String", "Summary")
    assert [(s.name, s.function, s.input_type, s.output_type) for s in p.stages] == [
        ("extract", "DocFlow::extract", "String", "Result<String, String>"),
        ("measure", "DocFlow::measure", "String", "Int"),
        ("summarize", "DocFlow::summarize", "Float", "Summary"),
    ]
    # Stage decorators, then the pipeline's own ones for what a stage does not set.
    assert [[(d.name, d.args) for d in s.decorators] for s in p.stages] == [
        [("retry", {"max": 3, "backoff": "exponential"}), ("timeout", {"seconds": 60})],
        [("timeout", {"seconds": 10})],
        [("timeout", {"seconds": 60})],
    ]
    extract = fn(program, "DocFlow::extract")
    assert [(q.name, q.type) for q in extract.params] == [("doc", "String")]
    assert extract.return_type == "Result<String, String>"
    # `?` in a stage that does not return Result: the Err ends the pipeline.
    assert "PROPAGATE" in ops(fn(program, "DocFlow::summarize"))
    main = fn(program, "main")
    assert ops(main, {"LOAD_CONST", "RUN_PIPELINE", "AWAIT"})[:3] == ["LOAD_CONST", "RUN_PIPELINE", "AWAIT"]
    assert instrs(main, "RUN_PIPELINE")[0].name == "DocFlow"
    assert type_of('DocFlow.run("x")', PIPELINE) == "Result<Summary, PipelineError>"


def test_pipeline_without_signature_runs_to_the_last_effective_output():
    src = """
        pipeline P {
            stage a(x: String) -> Int { x.len() }
            stage b(n: Int) -> Result<Array<Int>, String> { Ok([n]) }
        }
    """
    assert type_of('P.run("x")', src) == "Result<Array<Int>, PipelineError>"
    program = ok(src + 'fn main() { let r = P.run("x"); }\n')
    (p,) = program.pipelines
    assert (p.input_type, p.output_type) == ("String", "Array<Int>")


def test_pipeline_run_checks_its_input_and_arity():
    src = PIPELINE + 'fn main() {\n    let a = DocFlow.run(1);\n    let b = DocFlow.run("a", "b");\n    let c = DocFlow.go("a");\n}\n'
    messages = [m for _, _, m in errors(src)]
    assert messages == [
        "mismatched types: pipeline `DocFlow` takes `String`, found `Int`",
        "`DocFlow.run` takes 1 argument (the pipeline's input), 2 given",
        "no method `go` on pipeline `DocFlow`",
    ]


def test_pipeline_is_not_a_value():
    assert errors("pipeline P {\n    stage a(x: Int) -> Int { x }\n}\nfn main() {\n    let p = P;\n}\n") == [
        (5, 13, "pipeline `P` is not a value")]


def test_stage_adjacency_mismatch():
    src = """\
pipeline BuildFlow {
    stage parse(input: String) -> Int {
        42
    }

    stage render(parsed: String) -> String {
        "ok"
    }
}
fn main() {}
"""
    assert errors(src) == [(6, 18, "pipeline `BuildFlow` stage type mismatch: `parse` returns `Int` but "
                                   "`render` expects `String`")]


@pytest.mark.parametrize("out, inp", [
    ("Result<Int, String>", "Int"),      # Result unwrapped
    ("Int", "Float"),                    # numeric promotion
    ("Array<Int>", "Array<Float>"),      # element-wise
    ("Any", "String"),
    ("String", "Any"),
    ("Map<String, Int>", "Map<String, Int>"),
])
def test_stage_adjacency_accepts(out, inp):
    ok(f"pipeline P {{\n    stage a(x: Int) -> {out} {{ panic(\"x\") }}\n    stage b(y: {inp}) -> Int {{ 1 }}\n}}\n"
       "fn main() {}\n")


@pytest.mark.parametrize("out, inp", [
    ("Float", "Int"),
    ("Array<String>", "Array<Int>"),
    ("Map<String, Int>", "Map<String, Float>"),
    ("Option<Int>", "Int"),
])
def test_stage_adjacency_rejects(out, inp):
    errs = errors(f"pipeline P {{\n    stage a(x: Int) -> {out} {{ panic(\"x\") }}\n    stage b(y: {inp}) -> Int {{ 1 }}\n}}\n"
                  "fn main() {}\n")
    assert len(errs) == 1 and errs[0][:2] == (3, 13) and "stage type mismatch" in errs[0][2]


def test_stage_needs_a_return_type_and_one_parameter():
    src = "pipeline P {\n    stage classify(text: String) {\n        1\n    }\n    stage two(a: Int, b: Int) -> Int { a }\n" \
          "    stage none() -> Int { 1 }\n}\nfn main() {}\n"
    assert errors(src) == [
        (2, 5, "stage `classify` in pipeline `P` must have a return type annotation"),
        (5, 5, "stage `two` in pipeline `P` must have exactly one parameter"),
        (6, 5, "stage `none` in pipeline `P` must have exactly one parameter"),
    ]


def test_pipeline_with_no_stages_is_an_error():
    assert errors("pipeline Empty {}\nfn main() {}\n") == [(1, 1, "pipeline `Empty` has no stages")]


def test_pipeline_signature_mismatches():
    src = "pipeline Broken(input: Int) -> String {\n    stage process(text: String) -> Int {\n        text.len()\n    }\n}\nfn main() {}\n"
    assert errors(src) == [
        (1, 24, "pipeline `Broken` input type mismatch: the pipeline declares input `Int` but first stage "
                "`process` expects `String`"),
        (1, 32, "pipeline `Broken` output type mismatch: the pipeline declares output `String` but last stage "
                "`process` returns `Int`"),
    ]


def test_pipeline_signature_accepts_promotion_and_result_unwrapping():
    ok("pipeline P(input: Int) -> Float {\n    stage a(x: Float) -> Result<Int, String> { Ok(1) }\n}\nfn main() {}\n")


def test_pipeline_diagnostics_rendering(snapshot):
    src = "pipeline BuildFlow {\n    stage parse(input: String) -> Int {\n        42\n    }\n\n" \
          "    stage render(parsed: String) -> String {\n        \"ok\"\n    }\n}\nfn main() {}\n"
    result = compile_(src)
    text = "\n".join(render_plain(d, result.sources.get(d.file)) for d in result.diagnostics)
    assert text == snapshot


def test_pipeline_in_a_module():
    program = ok("""
        mod flows {
            pub pipeline Count(input: String) -> Int {
                stage count(s: String) -> Int { s.len() }
            }
        }
        use flows::Count;
        fn main() {
            let a = flows::Count.run("x");
            let b = Count.run("y");
        }
    """)
    (p,) = program.pipelines
    assert (p.name, p.module, p.stages[0].function) == ("flows::Count", "flows", "flows::Count::count")
    assert [i.name for i in instrs(fn(program, "main"), "RUN_PIPELINE")] == ["flows::Count", "flows::Count"]


def test_private_pipeline_of_another_module_is_an_error():
    errs = errors("mod flows {\n    pipeline Count {\n        stage count(s: String) -> Int { s.len() }\n    }\n}\n"
                  "fn main() {\n    let a = flows::Count.run(\"x\");\n}\n")
    assert errs and "private" in errs[0][2]


# ---------------------------------------------------------------- decorators
def test_function_decorators_reach_the_ir_with_named_arguments():
    program = ok("""
        @retry(3)
        @timeout(2.5)
        @cache
        @log("calls")
        fn a() -> Int { 1 }
        @retry(max: 2, backoff: "linear", delay_ms: 0)
        @cache(ttl_seconds: 60)
        @log
        fn b() {}
        fn main() { emit("x", a()); b(); }
    """)
    assert [(d.name, d.args) for d in fn(program, "a").decorators] == [
        ("retry", {"max": 3}), ("timeout", {"seconds": 2.5}), ("cache", {}), ("log", {"channel": "calls"})]
    assert [(d.name, d.args) for d in fn(program, "b").decorators] == [
        ("retry", {"max": 2, "backoff": "linear", "delay_ms": 0}), ("cache", {"ttl_seconds": 60}), ("log", {})]
    assert fn(program, "main").decorators == []


@pytest.mark.parametrize("decorator, message", [
    ("@retry(max: 0)", "`@retry` argument `max` must be an Int of at least 1, found 0"),
    ("@retry(max: 1.5)", "`@retry` argument `max` must be an Int of at least 1, found 1.5"),
    ('@retry(max: 2, backoff: "fast")', '`@retry` argument `backoff` must be "none", "linear" or "exponential", found "fast"'),
    ("@retry(max: 2, delay_ms: -1)", "`@retry` argument `delay_ms` must be an Int of at least 0, found -1"),
    ("@retry(backoff: \"linear\")", "`@retry` needs `max`"),
    ("@retry(tries: 3)", "`@retry` has no argument `tries`"),
    ('@timeout("5")', '`@timeout` argument `seconds` must be a number (Int or Float) greater than 0, found "5"'),
    ("@timeout(0)", "`@timeout` argument `seconds` must be a number (Int or Float) greater than 0, found 0"),
    ("@timeout", "`@timeout` needs `seconds`"),
    ("@timeout(1, 2)", "`@timeout` takes one positional argument (`seconds`), first; name the others"),
    ("@cache(ttl_seconds: -1)", "`@cache` argument `ttl_seconds` must be a number (Int or Float) greater than 0, found -1"),
    ("@log(5)", "`@log` argument `channel` must be a String, found 5"),
    ("@log(channel: x)", "`@log` argument `channel` must be a literal"),
    ("@timeout(seconds: 1, seconds: 2)", "`@timeout` argument `seconds` is given twice"),
])
def test_decorator_argument_errors(decorator, message):
    errs = errors(f"{decorator}\nfn f() {{}}\nfn main() {{}}\n")
    assert [m for _, _, m in errs] == [message]
    assert errs[0][0] == 1


def test_decorator_errors_on_stages_and_models():
    errs = errors('pipeline P {\n    @timeout(seconds: 0)\n    stage a(x: Int) -> Int { x }\n    @test\n'
                  '    stage b(x: Int) -> Int { x }\n}\n@retry(max: 0)\nmodel M { provider: openai, base: "gpt" }\n'
                  'fn main() {}\n')
    assert errs == [
        (2, 23, "`@timeout` argument `seconds` must be a number (Int or Float) greater than 0, found 0"),
        (4, 5, "unknown decorator `@test` on stage `b`"),
        (7, 13, "`@retry` argument `max` must be an Int of at least 1, found 0"),
    ]


def test_model_decorators_are_normalised_and_unknown_ones_kept():
    program = ok('@retry(3)\n@custom(1, x: 2)\n@timeout(seconds: 2.5)\nmodel M { provider: openai, base: "gpt" }\n'
                 'fn main() {}\n')
    assert [(d.name, d.args) for d in program.models[0].decorators] == [
        ("retry", {"max": 3}), ("custom", {"0": 1, "x": 2}), ("timeout", {"seconds": 2.5})]


def test_unknown_function_decorators_are_ignored_as_before():
    program = ok("@describe(\"x\")\nfn f() {}\nfn main() { f(); }\n")
    assert fn(program, "f").decorators == []


# ---------------------------------------------------------------- contextual keywords
def test_new_contextual_keywords_stay_usable_as_names():
    program = ok("""
        fn main() {
            let race = 1;
            let parallel = 2;
            let stage = 3;
            let pipeline = 4;
            let await_ = 5;
            emit("sum", race + parallel + stage + pipeline + await_);
            let stage_of = |stage: Int| stage + parallel;
            emit("s", stage_of(race));
        }
    """)
    assert not set(ops(fn(program, "main"))) & {"RACE", "PARALLEL_FOR", "AWAIT"}


def test_contextual_names_as_fields():
    ok("""
        struct Job { stage: Int, pipeline: String, race: Bool, parallel: Int }
        fn main() {
            let j = Job { stage: 1, pipeline: "p", race: true, parallel: 2 };
            emit("x", j.stage + j.parallel);
            emit("y", j.pipeline);
        }
    """)


# ---------------------------------------------------------------- IR round trip
def test_ir_round_trip_with_every_construct():
    program = ok(SCHEMA + PIPELINE.replace("schema Summary { text: String }", "") + """
        schema Summary { text: String }
        async fn number() -> Int { 1 }
        @retry(max: 2)
        fn retried() -> Int { 1 }
        fn main() {
            let a = number().await;
            let b = await (number(), 2);
            let c = race (number(), number());
            let d = parallel for x in [1, 2] { x + a };
            let t = spawn(|| retried());
            let e = await t;
            let f = await emit("ask", {"q": 1});
            emit<ClassificationEmit>("c", {"label": "a", "confidence": 1.0, "timestamp": "t", "level": "low"});
            flush_emits();
            let r = DocFlow.run("doc").await;
        }
    """)
    data = ir.encode(program)
    back = ir.decode(data)
    assert back == program
    assert ir.encode(back) == data
    used = {i.op for f in back.functions for i in f.instructions}
    assert {"AWAIT", "AWAIT_ALL", "RACE", "PARALLEL_FOR", "SPAWN_ASYNC", "EMIT_AWAIT", "RUN_PIPELINE"} <= used
    assert used <= ir.ALL_OPCODES
    assert back.pipelines[0].stages[0].decorators[0].name == "retry"
    assert fn(back, "retried").decorators == [ir.DecoratorDef("retry", {"max": 2})]


def test_parallel_for_ending_a_function_that_returns_nothing_is_a_statement():
    program = ok('fn main() {\n    parallel for d in ["a"] { d.len() }\n}\n')
    assert ops(fn(program, "main"))[-4:] == ["PARALLEL_FOR", "POP", "LOAD_CONST", "RETURN"]
    errs = errors('fn f() -> Int {\n    parallel for d in ["a"] { d.len() }\n}\nfn main() {}\n')
    assert errs == [(2, 5, "mismatched types: expected `Int`, found `Array<Int>`")]


def test_task_is_a_type_name():
    ok("fn main() {\n    let t: Task<Int> = spawn(|| 1);\n    let v: Int = t.await;\n}\n")
