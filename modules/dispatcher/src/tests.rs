use super::*;
use ferrosip_api::Registry;

fn registry() -> Registry {
    let mut reg = Registry::new();
    reg.register(&DispatcherModule);
    reg
}

/// Loads the module as the server does: init with the parameters, then the start hooks
/// on the runtime.
fn start(reg: &Registry, list_file: &std::path::Path, rt: &tokio::runtime::Runtime) {
    let def = reg.module("dispatcher").unwrap();
    let mut params = def.default_params();
    params.push("list_file", Value::from(list_file.display().to_string()));
    for init in &def.init {
        init(&params).unwrap();
    }
    for hook in &def.start {
        let env = ferrosip_api::StartEnv {
            params: &params,
            runtime: rt.handle().clone(),
        };
        rt.block_on(hook(&env)).unwrap();
    }
}

#[test]
fn dispatcher_reload_is_an_async_rpc_that_reads_the_list_again() {
    let dir = std::env::temp_dir().join(format!("ds-rpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("dispatcher.list");
    std::fs::write(&list, "1 sip:a.example.com:5060\n").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reg = registry();
    start(&reg, &list, &rt);
    let reload = reg.rpc("dispatcher.reload").unwrap();
    assert!(reload.is_async());
    std::fs::write(
        &list,
        "1 sip:a.example.com:5060\n1 sip:b.example.com:5060\n2 sip:c.example.com:5060\n",
    )
    .unwrap();
    // Called from inside the runtime, as the control interface calls it: no thread of its
    // own, no block_on.
    assert_eq!(rt.block_on(reload.call(vec![])), Ok(RpcValue::Int(3)));
    let listed = rt
        .block_on(reg.rpc("dispatcher.list").unwrap().call(vec![]))
        .unwrap();
    let text = format!("{listed:?}");
    assert!(text.contains("sip:c.example.com:5060"), "{text}");
    // A list that does not parse leaves the loaded sets in place and answers the error.
    std::fs::write(&list, "not a set id\n").unwrap();
    assert!(rt.block_on(reload.call(vec![])).is_err());
    let listed = rt
        .block_on(reg.rpc("dispatcher.list").unwrap().call(vec![]))
        .unwrap();
    assert!(format!("{listed:?}").contains("sip:c.example.com:5060"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_parameter_fails_the_load_naming_module_and_param() {
    for (param, value) in [
        ("ds_probing_mode", "9"),
        ("ds_ping_from", "\"not a uri\""),
        ("ds_ping_reply_codes", "\"class\""),
    ] {
        let mut reg = registry();
        ferrosip_script::register_core(&mut reg);
        let cfg = format!(
            "loadmodule \"dispatcher.so\"\nmodparam(\"dispatcher\", \"{param}\", {value})\nrequest_route {{ exit; }}\n"
        );
        let err = ferrosip_script::load_str(
            "t.cfg",
            &cfg,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        )
        .err()
        .unwrap_or_else(|| panic!("{param} {value} should be refused"))
        .to_string();
        assert!(
            err.contains("module dispatcher") && err.contains(param),
            "{err}"
        );
    }
}
