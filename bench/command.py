"""The command a cold-start run times: `digitvae generate -n 1` with the load options as its flags."""

from __future__ import annotations

from digitvae.runtime.errors import ProviderError
from digitvae.runtime.options import LoadOptions


def generate_args(options: LoadOptions) -> list[str]:
    """Return `digitvae generate -n 1`'s arguments that load the model as `options` say."""
    args = ["generate", "-n", "1", "-o", "x.png", "--model", options.model]
    if options.variant != "fp32":
        args += ["--variant", options.variant]
    if options.providers:
        pairs = [spec[0] for spec in options.providers if not isinstance(spec, str)]
        if pairs:
            raise ProviderError(
                f"a cold-start run takes provider names only (the command line's --provider), "
                f"not options for {', '.join(pairs)}"
            )
        args += ["--provider", ",".join(spec for spec in options.providers if isinstance(spec, str))]
    if options.strict:
        args.append("--strict")
    if options.threads:
        args += ["--threads", str(options.threads)]
    if not options.prior:
        args.append("--standard-prior")
    return args


def child_argv(options_json: str) -> list[str]:
    """Return a cold-start child's argv from the options it was sent as `LoadOptions.to_json()`."""
    return ["digitvae", *generate_args(LoadOptions.from_json(options_json))]
