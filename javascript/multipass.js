// Multipass: small UI helpers, scoped to elements whose id starts with "multipass_".
// Gradio does everything the accordion needs so far; this file stays until the UI needs it.
