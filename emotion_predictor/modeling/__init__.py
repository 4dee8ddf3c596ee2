"""The sequence classifier and what travels with it: building and saving, mean pooling, the head, the knn memory."""
