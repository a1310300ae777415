"""End-to-end journeys in resumable stages: reproduce (the paper), fit, class selection."""
