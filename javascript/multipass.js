// Multipass: small UI helpers, scoped to Multipass's own elements and events.

// Gradio 4.40's page sends every event by its number: its client looks the number up in the
// API description's unnamed endpoints (@gradio/client, utils/submit.ts get_endpoint_info),
// which 4.40's server never fills (blocks.py Blocks.get_api_info lists named endpoints only),
// and for an event that sends N > 0 values against no parameters it warns "Too many arguments
// provided for the endpoint." (helpers/api_info.ts map_data_to_params; gradio issue #9895).
// The page reads that description from window.gradio_api_info, set in <head> before the
// WebUI's scripts (this file among them) and read by gradio's deferred module after them:
// here Multipass's own events (api_name "multipass_...") get an unnamed entry with one
// optional parameter per input. The client then passes the same values on, unchanged, and
// has nothing to warn about. Gradio 3.41's page has no window.gradio_api_info: nothing to do.
(function describeMultipassEndpoints() {
    const info = window.gradio_api_info;
    const config = window.gradio_config;
    if (!info || !config || !Array.isArray(config.dependencies)) return;
    info.unnamed_endpoints = info.unnamed_endpoints || {};
    for (const dep of config.dependencies) {
        const name = dep.api_name;
        if (typeof name !== "string" || !name.startsWith("multipass_")) continue;
        if (!Array.isArray(dep.inputs) || dep.id in info.unnamed_endpoints) continue;
        info.unnamed_endpoints[dep.id] = {
            parameters: dep.inputs.map(() => ({
                parameter_name: null,
                parameter_has_default: true,
                parameter_default: null,
            })),
            returns: [],
        };
    }
})();
