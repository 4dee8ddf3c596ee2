from emotion_predictor import EmotionPredictor

predictor = EmotionPredictor.from_pretrained("runs/quickstart")  # load once when the chatbot starts
history = ["Hi, how was your weekend?", "Awful. I lost my keys and missed my flight."]
forecast = predictor.predict(history)  # how is the user likely to feel in the next turn?
print(forecast.label, forecast.probabilities)
