"""Dataset readers, one module per dataset family; importing this package registers them all.

=================  ==========================================================
module             readers
=================  ==========================================================
``svip``           ``svip-csv``, ``svip-coin``, ``svip-diving``, ``csv-matching``
``pennaction``     ``pennaction``
``mstcn``          ``breakfast``, ``mstcn``
``crosstask``      ``crosstask``
``procel``         ``procel``
``finediving``     ``finediving``
``tcc``            ``tcc-phases``
``folder``         ``folder``
=================  ==========================================================
"""

from procalign.data.readers import (  # noqa: F401
    crosstask,
    finediving,
    folder,
    mstcn,
    pennaction,
    procel,
    svip,
    tcc,
)
