"""Twisted's own log, which Daphne discards, into Python's ``logging``."""


def route_twisted_logs() -> None:
    """Twisted's warnings and errors into ``logging`` (logger ``twisted``).

    Daphne sends Twisted's log nowhere unless verbose: a failure inside
    Twisted was lost, or printed as plain text before logging began.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        STDLibLogObserver,
        globalLogPublisher,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogPublisher.addObserver(
        FilteringLogObserver(STDLibLogObserver("twisted"), [predicate])
    )
