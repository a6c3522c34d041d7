"""Contract test suites a plugin's tests subclass (as diffusers tests every scheduler with one class).

Each suite is a pytest mixin: subclass it in a ``test_*.py`` file as ``class TestMyDecoder(DecoderContract)``
and implement its ``make_*`` methods; every ``test_*`` method then runs against your classes::

    from diled_core.testing import DecoderContract

    class TestConvDecoder(DecoderContract):
        def make_decoder(self):
            return ConvDecoder(latent_dim=8, max_length=12)

        def make_batch(self):
            return my_datamodule().collate(examples[:4])

Suites: :class:`EncoderContract`, :class:`DecoderContract`, :class:`DataModuleContract` and
:class:`PredictContract` (every predict task end to end, through the plugin's writers and metrics).
Needs pytest (``pip install diled-core[test]``).
"""

from .suites import DataModuleContract, DecoderContract, EncoderContract, PredictContract

__all__ = ["DataModuleContract", "DecoderContract", "EncoderContract", "PredictContract"]
