"""Networks: builders by name or import path, the zoo, and the spec a bundle stores.

A builder is any function ``build(n_in, n_out, **params) -> torch.nn.Module`` mapping a
``(batch, n_in)`` float32 batch to ``(batch, n_out)`` logits (or one regression value). Name it
in :class:`~kit.config.TrainConfig` by import path (``net="my_nets:build"``) or register it
(``kit.nets.register("resnet_tab", build)``, then ``net="resnet_tab"``); its parameters go in
``net_params``. The zoo (``mlp``, ``resmlp``, ``ft_transformer``) is registered the same way.

A bundle stores a :class:`NetSpec` (builder reference, JSON parameters, shapes, the sha256 of the
builder's source), the source text (``network_source.txt``) and safetensors weights. Rebuilding
imports the builder by reference and checks that hash; stored code is never executed.

Modules: ``_registry`` (names, import paths, :func:`resolve`), ``_source`` (source text and
sha256), ``_spec`` (:class:`NetSpec`, the contract checks, :func:`prepare`, :func:`build` / :func:`rebuild`),
``_layers`` (what the zoo shares), and one module per zoo network.
"""

from __future__ import annotations

from kit.nets._registry import BUILTINS, DEFAULTS, Builder, names, register, resolve, unregister
from kit.nets._source import Source, builder_source, sha256_text
from kit.nets._spec import (
    SOURCE_ARTIFACT,
    NetSpec,
    build,
    call,
    check_params,
    config_params,
    prepare,
    rebuild,
)

__all__ = ["BUILTINS", "DEFAULTS", "SOURCE_ARTIFACT", "Builder", "NetSpec", "Source", "build", "builder_source", "call",
           "check_params", "config_params", "names", "prepare", "rebuild", "register", "resolve", "sha256_text",
           "unregister"]
