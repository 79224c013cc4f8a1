"""Example tasks shipped with eleanor_cloud (``eleanor-cloud demo`` runs :mod:`.demo`)."""
