"""WebUI preload hook: Multipass's command-line options."""


def preload(parser) -> None:
    """Add Multipass's options to the WebUI's argument parser."""
    parser.add_argument(
        "--multipass-allow-ckpt",
        action="store_true",
        help="Multipass: allow passes to load pickle-based .ckpt checkpoints "
        "(loading one can run code; off by default).",
    )
