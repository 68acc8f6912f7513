"""placeholder: registered by a later step"""
